"""`nst run` with its own temporary Prefect server: killed by SIGTERM or SIGKILL, it leaves no
process behind (the server dies with it), and SIGTERM ends it like Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.test_interruptions import _batch

NST = str(Path(sys.executable).parent / "nst")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_leaves_no_server_behind(tmp_path, sig):
    manifest = _batch(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # its own database: the temporary server's
    proc = subprocess.Popen(
        [NST, "run", str(manifest)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "out").glob("*.json")):  # a pair finished: the server is up and in use
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no pair finished in 240 s"
            time.sleep(0.2)
        server = _children(proc.pid)
        assert server, "nst run started no temporary server"
        os.kill(proc.pid, sig)  # the nst process alone, as a scheduler or `kill` would
        proc.wait(timeout=30)  # SIGTERM: within the 5 s grace (and Prefect's shutdown)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in server), "the temporary Prefect server outlived nst run"
        if sig == signal.SIGTERM:
            assert proc.returncode in (130, -signal.SIGTERM, 1), proc.returncode
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
