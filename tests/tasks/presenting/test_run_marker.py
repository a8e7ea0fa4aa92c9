"""The live view's marker (nst_batch.tasks.presenting.run_marker): whether the run that wrote it
still runs, on this host by its process, elsewhere by how long ago it wrote; and the live files of
an ended run removed before the next."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from nst_batch.tasks.output.layout import LIVE_DIR, LIVE_RUN
from nst_batch.tasks.planning.jobs import BatchSettings, Plan
from nst_batch.tasks.presenting.run_marker import STALE_AFTER_S, clear_ended_live_view, ended_run, write_marker


def _plan(root: str) -> Plan:
    return Plan("m.yaml", BatchSettings(root, "png"), ())


def test_a_run_in_this_process_runs_until_its_process_ends_or_it_says_interrupted(tmp_path):
    write_marker(_plan(str(tmp_path)), finished=3, since=time.time())
    marker = json.loads((tmp_path / LIVE_RUN).read_text())
    assert marker["finished"] == 3 and marker["planned"] == 0 and not ended_run(marker)
    assert ended_run({**marker, "interrupted": True})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert ended_run({**marker, "pid": int(gone.stdout)})  # its process has exited
    assert ended_run(None) and ended_run("not a marker")


def test_a_run_on_another_host_has_ended_once_it_stops_writing():
    now = time.time()
    elsewhere = {"host": socket.gethostname() + "-other", "pid": 1, "updated": now}
    assert not ended_run(elsewhere)
    assert ended_run({**elsewhere, "updated": now - STALE_AFTER_S - 1})
    assert ended_run({**elsewhere, "updated": "yesterday"})


def test_the_live_files_of_an_ended_run_go_and_those_of_a_running_one_stay(tmp_path):
    live = tmp_path / LIVE_DIR
    write_marker(_plan(str(tmp_path)), finished=0, since=time.time())
    (live / "a__x.json").write_text("{}")
    clear_ended_live_view(str(tmp_path))
    assert (live / "a__x.json").exists()  # this process still runs
    write_marker(_plan(str(tmp_path)), finished=0, since=time.time(), interrupted=True)
    clear_ended_live_view(str(tmp_path))
    assert not live.exists()
