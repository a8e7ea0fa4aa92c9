"""Flow runs that ``nst run`` leaves behind when it is killed.

A SIGKILL (or a machine that loses power) gives Prefect no chance to record the end of a run:
its flow run stays "Running" for ever. Each ``nst run`` tags its flow run with this machine's
name and its own process id and start time; the next ``nst run`` against the same server marks
the runs whose process is gone as Crashed.
"""

from __future__ import annotations

import os
import socket

from nst_batch.tasks.output.atomic import process_alive, process_start_time

_TAG = "nst-process"


def process_tag() -> str:
    """``nst-process:<host>:<pid>-<start time>``: this process, in a way a reused pid cannot fake."""
    return f"{_TAG}:{socket.gethostname()}:{os.getpid()}-{process_start_time(os.getpid())}"


def _dead(tag: str) -> bool:
    """Whether the process a tag names is gone (only processes of this machine can be known)."""
    try:
        _, host, process = tag.split(":", 2)
        pid, started = (int(x) for x in process.split("-"))
    except ValueError:
        return False
    return host == socket.gethostname() and not process_alive(pid, started)


def mark_dead_runs_crashed(flow_name: str) -> list[str]:
    """Set Crashed on the Running flow runs of ``flow_name`` whose ``nst run`` process is dead;
    returns their names. Failures to ask the server are ignored: this is housekeeping."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    marked: list[str] = []
    try:
        with get_client(sync_client=True) as client:
            running = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
                ),
                limit=200,
            )
            for run in running:
                tags = [t for t in run.tags or [] if t.startswith(_TAG + ":")]
                if tags and all(_dead(t) for t in tags):
                    client.set_flow_run_state(
                        run.id, Crashed(message="the nst run process that ran it was killed"), force=True
                    )
                    marked.append(str(run.name))
    except Exception:  # noqa: BLE001 - the server's housekeeping must never stop a run
        return marked
    return marked


def tag_this_flow_run() -> None:
    """Add this process's tag to the flow run being executed (a flow calls it first thing).

    Not with Prefect's ``tags`` context: its tags are inherited by every task run, and tagged task
    runs go through tag concurrency limits, whose slot leases cost ~2 s per task (measured: a
    2-second gap after every other chunk of pairs, 30 s in a 2,000-pair run)."""
    from prefect import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=[*(run.tags or []), process_tag()])
    except Exception:  # noqa: BLE001 - housekeeping must never stop a run
        return


def mark_task_runs_crashed(task_run_ids: list[object], message: str) -> int:
    """Set Crashed on task runs that will never report their end (their Dask workers are gone);
    returns how many were marked. A task that never started has no task run to mark; failures to
    ask the server are ignored: this is housekeeping."""
    from prefect import get_client
    from prefect.states import Crashed

    marked = 0
    try:
        with get_client(sync_client=True) as client:
            for task_run_id in task_run_ids:
                try:
                    state = client.read_task_run(task_run_id).state  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001, S112 - never started: there is no task run to mark
                    continue
                if state is not None and not state.is_final():
                    client.set_task_run_state(task_run_id, Crashed(message=message), force=True)  # type: ignore[arg-type]
                    marked += 1
    except Exception:  # noqa: BLE001 - housekeeping must never stop a run
        return marked
    return marked
