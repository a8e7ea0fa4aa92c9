"""The README's deployment block, as written (its port and manifest swapped for the test's): the
script starts the server, waits for it, creates the pool, deploys and starts a worker; the
`prefect deployment run ... --watch` that follows completes; SIGTERM stops the worker and the
server; no log holds a traceback or a telemetry error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.helpers import make_batch
from tests.logs import assert_no_traceback
from tests.s3_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def readme_block() -> list[str]:
    """The commands of the README's deployment block, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(bash scripts/prefect-local.sh[^`]*)```", text)
    assert block, "the README's deployment block starts with bash scripts/prefect-local.sh"
    joined = block.group(1).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_the_readme_deployment_block_runs_as_written(tmp_path):
    commands = readme_block()
    assert commands[0] == "bash scripts/prefect-local.sh &" and commands[1].startswith(
        "export PREFECT_API_URL=http://127.0.0.1:4200/api"
    )
    assert commands[2].startswith("prefect deployment run stylize-batch/default") and commands[2].endswith("--watch")
    manifest = make_batch(tmp_path / "batch")
    port = str(free_port())
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "home"),
        "NST_PREFECT_PORT": port,
        "NST_PREFECT_LOGS": str(tmp_path / "logs"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    for key in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        env.pop(key, None)
    script_log = tmp_path / "script.log"
    with script_log.open("w") as out:
        script = subprocess.Popen(
            ["bash", "-c", commands[0].removesuffix("&").strip()],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "prefect-local: ready." not in script_log.read_text():
            assert script.poll() is None, f"the script exited {script.returncode}:\n{script_log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in 180 s:\n{script_log.read_text()}"
            time.sleep(0.5)
        rest = "\n".join(commands[1:]).replace("4200", port).replace("$PWD/manifests/example.yaml", str(manifest))
        rest = rest.replace("$PWD/example-out", str(tmp_path / "out"))
        run = subprocess.run(["bash", "-euc", rest], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and "Completed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
        assert (tmp_path / "out" / "summary.json").exists()
        pids = [int(p) for p in re.findall(r"worker pid (\d+)", script_log.read_text())]
    finally:
        if script.poll() is None:
            os.kill(script.pid, signal.SIGTERM)  # what `kill` of the README's background job sends
        code = script.wait(timeout=60)
    assert code == 143, script_log.read_text()
    assert "stopped the worker and the server" in script_log.read_text()
    assert pids and not any(_alive(p) for p in pids)
    leftover = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "the server is still running"
    for log in ("server.log", "worker.log"):
        assert_no_traceback(tmp_path / "logs" / log, log)
        assert "Failed to send telemetry" not in (tmp_path / "logs" / log).read_text()
