"""The flow on a Dask cluster started elsewhere (``dask scheduler`` + ``dask worker``, dask-cuda,
Dask on Kubernetes): what Prefect's ``DaskTaskRunner`` leaves to us.

- **Reaching the scheduler**: within ``CONNECT_TIMEOUT_S``, or one line saying so (Dask's own
  default is to retry for 30 s and then raise from deep inside the flow run).
- **What the workers see**: a worker has its own disk. Before any work, :func:`check_cluster`
  asks every worker whether it sees the client's local files (and can read the first S3 input),
  so a manifest of local paths on a remote cluster is one line at validation, not a failure on
  every worker.
- **GPU resources**: when workers advertise a ``GPU`` resource (``dask worker --resources GPU=1``),
  every task asks for one, so each GPU runs one chunk at a time and CPU-only workers get none.
- **Lost workers**: Dask reruns the tasks of a worker that dies elsewhere, and a rerun chunk counts
  the pairs its first attempt wrote as produced, without redoing them (see
  ``nst_batch.tasks.pair.pipeline``). With no worker at all, Dask would wait for one forever:
  after ``NST_DASK_NO_WORKERS_S`` seconds (default 120) without workers the runner cancels what
  is left, with one line saying why, marks their Prefect task runs Crashed, and the run fails; a
  re-run resumes.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
import uuid
import weakref
from concurrent.futures import CancelledError
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_dask import DaskTaskRunner

from nst_batch.tasks.environment import DASK_NO_WORKERS_S
from nst_batch.tasks.errors import ClusterError
from nst_batch.tasks.output.layout import PROBE_PREFIX
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.planning.jobs import Plan
from nst_batch.tasks.running.prefect_runs import mark_task_runs_crashed

if TYPE_CHECKING:  # distributed itself is imported where a cluster is used
    from distributed import Client
    from prefect.task_runners import TaskRunner

CONNECT_TIMEOUT_S = 4.0  # a scheduler answers in milliseconds; `nst run` must say it is unreachable within 10 s
DEFAULT_NO_WORKERS_S = 120.0
GPU_RESOURCE = "GPU"
_SAMPLED_INPUTS = 16  # local inputs whose presence every worker confirms (the styles first)


def no_workers_s() -> float:
    value = DASK_NO_WORKERS_S.read()
    return DEFAULT_NO_WORKERS_S if value is None else value


_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")


def check_address(address: str) -> str:
    """``address`` if Dask can connect to it by its scheme; a ``http://`` address (the dashboard's)
    left a client that Dask could only close with a traceback at exit."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in _SCHEMES or not rest:
        raise ClusterError(
            f"dask_address must be tcp://host:port (or {', '.join(_SCHEMES[1:-1])}), got {address[:80]!r}"
            + (
                "; http:// is the dashboard's address, the scheduler's is tcp://host:8786"
                if scheme.startswith("http")
                else ""
            ),
            settings=["dask_address"],
        )
    return address


def connect(address: str) -> Client:
    """A client of the scheduler at ``address``, or :class:`ClusterError` within ``CONNECT_TIMEOUT_S``."""
    import distributed

    check_address(address)
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise unreachable(address, exc) from None


def unreachable(address: str, exc: BaseException) -> ClusterError:
    return ClusterError(
        f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S:g} s ({' '.join(str(exc).split())}); "
        f"is it running, and is dask_address right?",
        settings=["dask_address"],
    )


def gpu_resources(client: Client) -> dict[str, float] | None:
    """``{"GPU": 1}`` when any worker advertises GPUs, so that tasks go only to those, one per GPU."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {GPU_RESOURCE: 1} if any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers.values()) else None


def slots(client: Client) -> int:
    """How many tasks the cluster runs at once: its GPUs where workers advertise them, else its threads."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    gpus = sum(int(w.get("resources", {}).get(GPU_RESOURCE, 0)) for w in workers)
    return max(1, gpus or sum(int(w.get("nthreads", 1)) for w in workers))


def failure_reason(exc: BaseException) -> str:
    """One line for a task that did not run to its end: a cancellation's own message (the
    runner's "no workers" line), else the exception's text."""
    if isinstance(exc, CancelledError) and getattr(exc, "msg", None):
        return " ".join(str(exc.msg).split())  # type: ignore[attr-defined]
    return " ".join(str(exc).split()) or type(exc).__name__


class ClusterTaskRunner(DaskTaskRunner):
    """``DaskTaskRunner`` with a bounded connection, GPU resources and a no-workers watchdog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("address"):
            kwargs["client_kwargs"] = {"timeout": CONNECT_TIMEOUT_S, **(kwargs.get("client_kwargs") or {})}
        super().__init__(*args, **kwargs)
        self.resources: dict[str, float] | None = None
        # Weak: the flow lets go of each task's future once it has its result, and Dask recomputes a
        # lost result for as long as any client holds the future.
        self._pending: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        # The runner travels with the flow's tasks to the workers (cloudpickle): locks do not.
        state = self.__dict__.copy()
        for name in ("_lock", "_stop", "_pending"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._stop, self._pending = threading.Lock(), threading.Event(), weakref.WeakSet()

    def __enter__(self) -> ClusterTaskRunner:
        limit_s = no_workers_s()  # a bad setting is one line before any cluster starts
        super().__enter__()
        try:
            client = self.client
        except (OSError, TimeoutError) as exc:
            raise unreachable(str(self.address), exc) from None
        if self.address:
            self.resources = gpu_resources(client)
        # A local cluster too: its workers can die (OOM) and Dask would wait for ever.
        # In this context (Prefect's settings: which API), which a new thread would not inherit.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._watch, limit_s), name="nst-dask-watch", daemon=True).start()
        return self

    def __exit__(self, *args: Any) -> None:
        self._stop.set()
        super().__exit__(*args)

    def slots(self) -> int:
        return slots(self.client)

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None) -> Any:
        import dask

        if self.resources:
            with dask.annotate(resources=self.resources):
                future = super().submit(task, parameters, wait_for, dependencies)
        else:
            future = super().submit(task, parameters, wait_for, dependencies)
        with self._lock:
            self._pending.add(future.wrapped_future)
        return future

    def _watch(self, limit_s: float) -> None:
        """Cancel what is left once the cluster has had no workers for ``limit_s`` seconds."""
        since: float | None = None
        while not self._stop.wait(1.0):
            try:
                workers = len(self._client.nthreads()) if self._client is not None else 1
            except Exception:  # noqa: BLE001 - the scheduler itself is unreachable: as good as no workers
                workers = 0
            since = None if workers else since or time.monotonic()
            if since is not None and time.monotonic() - since >= limit_s:
                where = f"the Dask cluster at {self.address}" if self.address else "the local Dask cluster"
                self._give_up(f"{where} had no workers for {limit_s:g} s ({DASK_NO_WORKERS_S.name}); re-run to resume")
                return

    def _give_up(self, reason: str) -> None:
        with self._lock:
            pending = [f for f in self._pending if not f.done()]
        if pending and self._client is not None:
            self._client.cancel(pending, reason="no-workers", msg=reason)
            # Their Prefect task runs were Running on workers that are gone: nothing else will end them.
            mark_task_runs_crashed([f.task_run_id for f in pending if getattr(f, "task_run_id", None)], reason)


def check_cluster(plan: Plan, address: str) -> int:
    """Connect to the cluster and make sure every worker sees what the plan names: its local files
    (inputs, weights, the output root) and its first S3 input. Returns the number of workers;
    raises :class:`ClusterError` with one line naming a worker and a path."""
    client = connect(address)
    try:
        workers = _check_workers_see(client, plan)
    finally:
        client.close()
    return workers


def _check_workers_see(client: Client, plan: Plan) -> int:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not workers:
        return 0  # nothing to ask yet: workers may join later (the run waits for NST_DASK_NO_WORKERS_S)
    _check_local_paths(client, plan)
    _check_s3_reads(client, plan)
    return len(workers)


def _local_inputs(plan: Plan) -> list[str]:
    styles = [u for u in plan.styles.values() if not storage_for(u).shared]
    contents = list(dict.fromkeys(p.content_uri for p in plan.pairs if not storage_for(p.content_uri).shared))
    weights = [plan.settings.runtime.weights] if os.path.isfile(plan.settings.runtime.weights) else []
    return list(dict.fromkeys(styles + weights + contents))[:_SAMPLED_INPUTS]


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _worker_view(paths: list[str], probe: str | None) -> dict[str, Any]:
    """Run on each worker: each path's size and time, and the probe file's text."""
    seen = {p: _stat(p) for p in paths}
    try:
        text = Path(probe).read_text() if probe else None
    except OSError:
        text = None
    return {"stats": seen, "probe": text}


def _check_local_paths(client: Client, plan: Plan) -> None:
    paths = _local_inputs(plan)
    root = plan.settings.output_root
    # A root on this machine's disk: every worker must see a file written there now.
    probe, token = (
        (None, None) if storage_for(root).shared else (join(root, PROBE_PREFIX + uuid.uuid4().hex), uuid.uuid4().hex)
    )
    if not paths and probe is None:
        return
    if probe is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
        Path(probe).write_text(token or "")
    try:
        views = client.run(_worker_view, paths, probe)
    finally:
        if probe is not None:
            Path(probe).unlink(missing_ok=True)
    mine = {p: _stat(p) for p in paths}
    for worker, view in sorted(views.items()):
        missing = next((p for p in paths if view["stats"].get(p) != mine[p]), None)
        if missing is None and probe is not None and view["probe"] != token:
            missing = root
        if missing is not None:
            raise ClusterError(
                f"Dask worker {worker} does not see {missing} as this machine does: with a cluster, local paths "
                f"need a disk that every worker shares; give s3:// URIs for the inputs and the output"
            )


def _check_s3_reads(client: Client, plan: Plan) -> None:
    first = next(
        (u for u in [*plan.styles.values(), *(p.content_uri for p in plan.pairs[:1])] if storage_for(u).shared), None
    )
    if first is None:
        return
    for worker, problem in sorted(client.run(_s3_problem, first).items()):
        if problem:
            raise ClusterError(
                f"Dask worker {worker} cannot read {first}: {problem} (the workers need the same S3 "
                f"endpoint and credentials as this machine: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)"
            )


def _s3_problem(uri: str) -> str | None:
    """Run on each worker: why it cannot see ``uri``, or None."""
    try:
        return None if storage_for(uri).exists(uri) else "no such object"
    except Exception as exc:  # noqa: BLE001 - whatever it is, it goes into one line
        return " ".join(str(exc).split()) or type(exc).__name__


def check_runner_sees(runner: TaskRunner[Any] | None, plan: Plan, checked: str | None = None) -> None:
    """The check of :func:`check_cluster`, through the flow's own client, when the flow's tasks
    run on a cluster started elsewhere, unless its caller has checked that cluster (``checked``:
    its address) against this plan."""
    if isinstance(runner, ClusterTaskRunner) and runner.address and runner.address != checked:
        _check_workers_see(runner.client, plan)


def follow_pairs(runner: TaskRunner[Any] | None, run_id: str) -> None:
    """On a Dask runner, report each pair its workers finish as it finishes (a chunk's result comes
    only at its end); other runners' pairs finish in this process, which reports them itself."""
    from nst_batch.tasks.presenting.progress import pair_topic, remote_pair_finished

    if isinstance(runner, ClusterTaskRunner) and run_id:
        runner.client.subscribe_topic(pair_topic(run_id), remote_pair_finished)
