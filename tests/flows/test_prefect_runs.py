"""Flow runs of killed `nst run` processes are marked Crashed by the next run."""

import subprocess
import sys

from prefect import get_client
from prefect.states import Running

from nst_batch.flows.stylize_batch import FLOW_NAME
from nst_batch.tasks.output.atomic import process_start_time
from nst_batch.tasks.running.prefect_runs import _dead, mark_dead_runs_crashed, process_tag
from nst_batch.tasks.running.scheduling import chunk_size


def _running_run(client, tag: str):
    return client.create_flow_run(flow=_named(FLOW_NAME), tags=[tag], state=Running())


def _named(name: str):
    from prefect import flow

    @flow(name=name)
    def stand_in() -> None:
        return None

    return stand_in


def test_runs_of_dead_processes_are_marked_crashed_live_ones_kept(prefect_server):
    dead_pid = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    host = process_tag().split(":")[1]
    dead_tag = f"nst-process:{host}:{dead_pid}-12345"
    assert _dead(dead_tag) and not _dead(process_tag())
    assert not _dead(f"nst-process:another-host:{dead_pid}-1")  # another machine's processes cannot be known
    assert _dead(f"nst-process:{host}:1-{process_start_time(1) + 1}")  # pid 1 lives, but not the one that started then
    with get_client(sync_client=True) as client:
        dead = _running_run(client, dead_tag)
        live = _running_run(client, process_tag())
        marked = mark_dead_runs_crashed(FLOW_NAME)
        assert dead.name in marked and live.name not in marked
        assert client.read_flow_run(dead.id).state.is_crashed()
        assert client.read_flow_run(live.id).state.is_running()


def test_chunks_keep_every_worker_busy_and_stay_small():
    assert chunk_size(1, 1) == 1 and chunk_size(40, 1) == 5 and chunk_size(10_000, 1) == 64 and chunk_size(40, 4) == 2
