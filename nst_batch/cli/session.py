"""The Prefect session of ``nst run``: the temporary server when none is configured, the API
client's lifetime, Ctrl-C and SIGTERM (a grace period, then exit), quieter library logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nst_batch.tasks.basics import plural

if TYPE_CHECKING:
    from nst_batch.cli.server import TemporaryServer


def quiet_libraries() -> None:
    """Prefect's and Dask's INFO lines (a "Finished in state" per task, a Dask cluster's start-up)
    drown ours; -v shows them. Dask's logger is set here as well as through the environment (which
    its worker processes inherit): how it is set up when imported depends on what configured
    logging before it, and records that reach the root logger were printed in Prefect's format."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


def drain_prefect() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


INTERRUPT_GRACE_S = 5.0


@contextlib.contextmanager
def stop_soon_after_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual, and the process ends at most INTERRUPT_GRACE_S
    later whatever happens to it: in the full test suite a SIGINT was seen not to stop a batch
    (Prefect waits on its own threads and futures; where it swallows the interrupt was not found),
    and the interpreter's exit also waits for the task runner's threads to finish their pairs.
    Ending hard is safe: every write is atomic, and a re-run skips finished pairs and removes the
    temporary files of dead writers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        threading.Thread(target=exit_after_grace, name="nst-interrupt", daemon=True).start()
        signal.default_int_handler(signum, frame)

    # SIGTERM (a scheduler stopping the job, `kill`) ends a run the same way as Ctrl-C: Prefect
    # records the run's end and the temporary server is stopped, where the default would kill us
    # on the spot and leave the flow run "Running".
    previous = {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Inside a flow run Prefect installs its own SIGTERM handler (prefect.utilities.engine's
    # capture_sigterm), which raises in the flow and calls ours only after the task runner has
    # waited for the pair in progress: 12 s were measured. Its handler is looked up by module
    # attribute when installed, so the grace timer is started from it too (Prefect is pinned
    # below 3.10; tests/flows/test_interruptions.py measures SIGTERM on every runner).
    from prefect.utilities import engine

    prefect_handler = engine._prefect_sigterm_handler

    def with_grace(signum: int, *args: Any) -> Any:
        threading.Thread(target=exit_after_grace, name="nst-interrupt", daemon=True).start()
        return prefect_handler(signum, *args)

    engine._prefect_sigterm_handler = with_grace  # type: ignore[assignment]
    try:
        yield
    finally:
        engine._prefect_sigterm_handler = prefect_handler
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_after_grace() -> None:
    if _EXITING.is_set():  # a second signal: the first one's timer is already running
        return
    _EXITING.set()
    time.sleep(INTERRUPT_GRACE_S)
    print(
        f"nst: interrupted; stopping now ({INTERRUPT_GRACE_S:.0f} s after the interrupt)", file=sys.stderr, flush=True
    )
    if _SERVER is not None:
        _SERVER.stop()  # os._exit skips atexit
    os._exit(130)


_SERVER: TemporaryServer | None = None  # this process's temporary Prefect server, if it started one


_EXITING = threading.Event()


def start_temporary_server() -> TemporaryServer | None:
    """Without a Prefect server to talk to (no PREFECT_API_URL in the environment or the profile),
    start the temporary one now, so that it starts while we import and load (see nst_batch.cli.server)."""
    global _SERVER
    import atexit

    from nst_batch.cli.server import TemporaryServer

    if os.environ.get("PREFECT_API_URL"):
        return None
    # Started before Prefect's settings are imported (1 s); stopped again if the profile names a server.
    server = TemporaryServer().start()
    atexit.register(server.stop)
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        server.stop()
        return None
    _SERVER = server
    return server


@contextlib.contextmanager
def prefect_api(server: TemporaryServer | None) -> Iterator[None]:
    """Point Prefect at our temporary server, once it answers."""
    from nst_batch.flows.stylize_batch import FLOW_NAME
    from nst_batch.tasks.running.prefect_runs import mark_dead_runs_crashed

    if server is None:
        _report_crashed(mark_dead_runs_crashed(FLOW_NAME))
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server.wait()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        _report_crashed(mark_dead_runs_crashed(FLOW_NAME))
        yield


def _report_crashed(names: list[str]) -> None:
    if names:
        print(
            f"marked {plural(len(names), 'flow run')} of killed nst runs as Crashed: {', '.join(names)}",
            file=sys.stderr,
        )


def quiet_prefect_defaults() -> None:
    """No telemetry from the temporary server (it cannot reach the internet, logs an error each
    time, and its writes contend for the SQLite file); users can still set these themselves."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # the client's telemetry notice, too
    # Expandable segments let the CUDA allocator grow blocks in place instead of caching many
    # sizes: less memory reserved beyond what is used (read when CUDA starts; users may override).
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
