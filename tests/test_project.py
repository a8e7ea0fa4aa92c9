"""Project-level checks: the rings' import direction, and that the README and CI agree (the
Dockerfile and the deployment files: tests/test_deployments.py)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nst_batch"
FORBIDDEN_IN_CORE = (
    "prefect",
    "boto3",
    "botocore",
    "yaml",
    "pydantic",
    "PIL",
    "nst_batch.tasks",
    "nst_batch.flows",
    "nst_batch.cli",
)


def test_core_imports_only_torch_and_the_standard_library():
    code = "import sys, nst_batch.core; print(','.join(sorted(sys.modules)))"
    loaded = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        .stdout.strip()
        .split(",")
    )
    offenders = {m for m in loaded for bad in FORBIDDEN_IN_CORE if m == bad or m.startswith(bad + ".")}
    assert not offenders, offenders


def test_core_source_has_no_outer_imports():
    pattern = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(re.escape(m) for m in FORBIDDEN_IN_CORE) + r")\b", re.M)
    offenders = [str(p) for p in (PACKAGE / "core").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_tasks_never_import_flows_or_the_cli():
    pattern = re.compile(r"^\s*(?:from|import)\s+nst_batch\.(flows|cli)\b", re.M)
    assert [str(p) for p in (PACKAGE / "tasks").rglob("*.py") if pattern.search(p.read_text())] == []


def _module_imports() -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports, lazily inside a function
    or not (a cycle through a lazy import is still a cycle)."""
    import ast

    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nst_batch"):
                found.update(
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                )
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("nst_batch"))
        graph[name] = {
            m
            for m in found
            if m in modules and m != name and not name.startswith(m + ".") and not m.startswith(name + ".")
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules():
    assert _cycles(_module_imports()) == []


def test_the_tasks_subpackages_follow_the_pipeline():
    """Each sub-package of nst_batch.tasks imports only those before it: output (storage, the
    layout), planning, pair, presenting, running."""
    order = ["output", "planning", "pair", "presenting", "running"]
    late = []
    for module, imported in _module_imports().items():
        parts = module.split(".")
        if len(parts) < 4 or parts[1] != "tasks":
            continue
        for other in imported:
            theirs = other.split(".")
            if len(theirs) >= 4 and theirs[1] == "tasks" and order.index(theirs[2]) > order.index(parts[2]):
                late.append(f"{module} imports {other}")
    assert late == []


def test_a_pair_and_the_presenting_take_the_plans_types_without_the_planner():
    """pair/ and presenting/ import the plan's types (planning.jobs), never the planner itself."""
    planner = "nst_batch.tasks.planning.plan"
    graph = _module_imports()
    users = sorted(m for m, imported in graph.items() if planner in imported)
    assert [m for m in users if m.split(".")[2] in ("pair", "presenting", "output")] == []
    assert any(m.startswith("nst_batch.tasks.pair.") and "nst_batch.tasks.planning.jobs" in graph[m] for m in graph)


def test_every_module_is_imported_by_a_test():
    """Tests mirror the package: each module has a test that imports it (not only through a
    package's re-export), so that a module no test names is seen, not assumed covered."""
    import ast

    named: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                named |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                named |= {a.name for a in node.names}
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("nst_batch."):
                named.add(node.value)  # python -m nst_batch.cli
    modules = [  # a __main__ is named by ``python -m`` its package
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__main__")
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    ]
    assert sorted(m for m in modules if m not in named) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_tasks_subpackage_says_what_it_owns():
    for init in sorted((PACKAGE / "tasks").glob("*/__init__.py")):
        doc = init.read_text().strip()
        assert doc.startswith('"""') and doc.count("\n") == 0, f"{init}: a one-line docstring"


def test_one_package_is_installed():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["include"] == ["nst_batch*"]
    assert (PACKAGE / "py.typed").exists()
    assert not [
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in ("nst_batch", "tests", "benchmarks")
    ]


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


def test_the_type_check_runs_before_the_tests_and_refuses_an_untyped_function(tmp_path):
    """scripts/test.sh (CI) runs mypy over the package before pytest, at a strictness that refuses
    a function without annotations: the check can fail."""
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert ".venv/bin/mypy || exit 1" in script and script.index(".venv/bin/mypy") < script.index("-m pytest")
    bad = tmp_path / "untyped.py"
    bad.write_text("def twice(x):\n    return 2 * x\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 1 and "no-untyped-def" in done.stdout, done.stdout + done.stderr


# A measured duration (``2 min 25 s``, ``17 ms``, ``3m05s``); settings and bounds ("every 5 s",
# "within 10 s", "<= 60 s", "20 s ahead") are not measurements.
_DURATION = re.compile(r"(?<![\w.])\d[\d,]*(\.\d+)? ?(ms|s|min|minutes|seconds|hours?)\b|\b\d+m\d\ds\b")
_BOUND_BEFORE = re.compile(
    r"(\b(every|within|after|for|to|at most|up to|timeout|limit|waits?|grace|retry|retries|than|per|under|over|by|in)"
    r"|<=|>=|<|>|~)\s*~?$",
    re.I,
)
_MACHINE = re.compile(r"\d-core|\bcores?\b|GPU|H100|H200|Xeon|EPYC|AVX|machine|CPU", re.I)
_DATE = re.compile(r"20\d\d-\d\d-\d\d")


def _paragraphs(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands, not claims
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _measured_durations(paragraph: str) -> list[str]:
    return [
        m.group(0)
        for m in _DURATION.finditer(paragraph)
        if not _BOUND_BEFORE.search(paragraph[max(0, m.start() - 12) : m.start()].rstrip())
        and not paragraph[m.end() : m.end() + 7].startswith((" ahead", " ago"))
    ]


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


def test_every_error_class_lives_in_its_rings_errors_module():
    """One module per ring holds its exception tree (core, tasks, cli); the flows raise none."""
    import ast

    homes = {PACKAGE / "core" / "errors.py", PACKAGE / "tasks" / "errors.py", PACKAGE / "cli" / "errors.py"}
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception", "Failed", "BadInput"))
                for b in node.bases
            ):
                if path not in homes:
                    strays.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert strays == []


def test_only_storage_knows_which_storage_a_uri_is_on():
    """Every read and write goes through the Storage a URI routes to (storage_for); code elsewhere
    asks that storage (shared, local_path, entry_kind) instead of branching on ``s3://``."""
    pattern = re.compile(r"\bis_s3\(|[\"']s3://[\"']\)|\bLocalStorage\(\)|\bS3Storage\(")
    storage = PACKAGE / "tasks" / "output" / "storage"
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if storage not in p.parents
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_importing_the_flow_reads_no_setting_and_imports_no_pytorch():
    """A Prefect worker, `prefect deploy` and a Dask scheduler import the flow; the stylizer (and
    PyTorch, 1.7 s of a 3-s import) comes in where a pair runs."""
    code = (
        "import sys, nst_batch.flows.stylize_batch; print(sorted(m for m in ('torch', 'torchvision') if m in "
        "sys.modules))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("NST_")}
    env["NST_TASK_RUNNER"] = "no such runner"  # read at import, this would fail
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_every_name_under_the_output_root_comes_from_the_layout():
    """One owner of the output layout (nst_batch/tasks/output/layout.py): no other module spells
    the run's own file and folder names."""
    spelled = re.compile(r"[\"'](index\.html|summary\.json|thumbs[/\"']|live/|\.cache|\.nst-[\w-]+)|\.pt[\"']")
    layout = PACKAGE / "tasks" / "output" / "layout.py"
    offenders = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if p != layout
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if spelled.search(line)
    ]
    assert offenders == []
