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
