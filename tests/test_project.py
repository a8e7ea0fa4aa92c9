"""Project-level checks: the rings' import direction, and that the README and CI agree (the
Dockerfile and the deployment files: tests/test_deployments.py)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_CORE = ("prefect", "boto3", "botocore", "yaml", "pydantic", "tasks", "flows", "nst_cli", "PIL")


def test_core_imports_only_torch_and_the_standard_library():
    code = "import sys, nst_core; print(','.join(sorted(m.split('.')[0] for m in sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip().split(","))
    assert not loaded.intersection(FORBIDDEN_IN_CORE), loaded.intersection(FORBIDDEN_IN_CORE)


def test_core_source_has_no_outer_imports():
    pattern = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(FORBIDDEN_IN_CORE) + r")\b", re.M)
    offenders = [str(p) for p in (ROOT / "nst_core").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_tasks_never_import_flows_or_the_cli():
    pattern = re.compile(r"^\s*(?:from|import)\s+(flows|nst_cli)\b", re.M)
    assert [str(p) for p in (ROOT / "tasks").rglob("*.py") if pattern.search(p.read_text())] == []


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("\n## ", text.index("```"))]  # the commands near the top
    return re.findall(r"^(?!#)(\S.*)$", "\n".join(re.findall(r"```(?:sh|bash)?\n(.*?)```", head, re.S)), re.M)


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    assert "bash scripts/test.sh" in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_readme_run_command_installs_first():
    assert any(c.startswith("bash scripts/run-example.sh") for c in _readme_commands())
    assert "scripts/bootstrap.sh" in (ROOT / "scripts" / "run-example.sh").read_text()


def test_test_script_refuses_an_empty_test_run():
    assert '"$code" -eq 5' in (ROOT / "scripts" / "test.sh").read_text()


# A measured duration (``2 min 25 s``, ``17 ms``, ``3m05s``); settings and bounds ("every 5 s",
# "within 10 s", "<= 60 s", "20 s ahead") are not measurements.
_DURATION = re.compile(r"(?<![\w.])\d[\d,]*(\.\d+)? ?(ms|s|min|minutes|seconds|hours?)\b|\b\d+m\d\ds\b")
_BOUND_BEFORE = re.compile(r"(\b(every|within|after|for|to|at most|up to|timeout|limit|waits?|grace|retry|retries|than|per|under|over|by|in)"
                           r"|<=|>=|<|>|~)\s*~?$", re.I)
_MACHINE = re.compile(r"\d-core|\bcores?\b|GPU|H100|H200|Xeon|EPYC|AVX|machine|CPU", re.I)
_DATE = re.compile(r"20\d\d-\d\d-\d\d")


def _paragraphs(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands, not claims
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _measured_durations(paragraph: str) -> list[str]:
    return [m.group(0) for m in _DURATION.finditer(paragraph)
            if not _BOUND_BEFORE.search(paragraph[max(0, m.start() - 12):m.start()].rstrip())
            and not paragraph[m.end():m.end() + 7].startswith((" ahead", " ago"))]


def test_every_timing_in_the_docs_says_on_which_machine_and_when():
    """A time without its machine and date cannot be checked or compared ("2 min 25 s" for the
    example job was the run alone, on one CPU). The paragraph, or the one before it (a table's
    caption), names the machine and the date."""
    unplaced = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        before = ""
        for paragraph in _paragraphs(doc.read_text()):
            times, context, before = _measured_durations(paragraph), paragraph + "\n" + before, paragraph
            if times and not (_MACHINE.search(context) and _DATE.search(context)):
                unplaced.append(f"{doc.relative_to(ROOT)}: {times} in {paragraph[:120]!r}")
    assert not unplaced, "\n".join(unplaced)


def test_the_timing_check_finds_a_bare_timing():
    assert _measured_durations("The example job took 2 min 25 s.") == ["2 min", "25 s"]
    assert _measured_durations("The page reloads every 5 s, within 10 s, <= 60 s.") == []
    assert _measured_durations("one direction takes 17 ms") == ["17 ms"]
