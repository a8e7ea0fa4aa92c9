"""The flow's task runner, chosen by a setting: threads (default) or Dask.

Environment (so a deployment sets it in its job variables, and ``nst run`` from its flags):

- ``NST_TASK_RUNNER``: ``threads`` (default) or ``dask``;
- ``NST_DASK_ADDRESS``: an existing Dask scheduler (``tcp://host:8786``) instead of a local cluster;
- ``NST_DASK_WORKERS``: worker processes of the local cluster (default: one per GPU, else 1);
- ``NST_DASK_NO_WORKERS_S``: how long a run waits on a cluster without workers (see nst_batch.tasks.running.cluster).
"""

from __future__ import annotations

from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner

from nst_batch.tasks.environment import DASK_ADDRESS, DASK_WORKERS, TASK_RUNNER, THREADS, parsed
from nst_batch.tasks.errors import InputError

RUNNER_ENV = TASK_RUNNER.name


def concurrency() -> int:
    """Jobs that can usefully run at once here: ``pairs_per_gpu`` per GPU (see nst_batch.tasks.pair.device_pool); on
    a CPU one (a single job already keeps every core busy inside its convolutions)."""
    import torch

    from nst_batch.tasks.pair.device_pool import pairs_per_gpu

    return max(1, torch.cuda.device_count()) * pairs_per_gpu() if torch.cuda.is_available() else 1


def runner_slots(runner: TaskRunner[Any] | None) -> int:
    """How many tasks ``runner`` runs at once: a Dask cluster's own count (its GPUs or threads,
    wherever it is), else this machine's :func:`concurrency`."""
    counted = getattr(runner, "slots", None)
    return counted() if callable(counted) else concurrency()


def existing_cluster(kind: str | None = None, address: str | None = None) -> str | None:
    """The address of the Dask cluster started elsewhere that the tasks go to, if any: the
    arguments first, then the environment."""
    kind = kind or TASK_RUNNER.read() or "threads"
    address = address or DASK_ADDRESS.read() or None
    return address if kind == "dask" else None


def dask_workers(text: str, setting: str) -> int:
    """A local cluster's worker processes: 1..256 (0 or a negative count started none and waited
    for ever; a huge one forked until the machine gave out)."""
    return parsed(setting, text, DASK_WORKERS.parse)


def require_extra(module: str, extra: str, what: str) -> None:
    """One line naming the extra to install when an optional dependency is missing, instead of a
    ModuleNotFoundError from deep inside the flow module's import."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(
            f"{what} needs {module.replace('_', '-')}: pip install -c constraints.txt 'nst-batch[{extra}]'",
            settings=["runner"],
        )


def make_task_runner(
    kind: str | None = None, address: str | None = None, workers: int | None = None
) -> TaskRunner[Any]:
    kind = kind or TASK_RUNNER.read() or "threads"
    address = existing_cluster(kind, address)
    workers = DASK_WORKERS.read() if workers is None else dask_workers(str(workers), "dask_workers")
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=concurrency())
    if kind != "dask":
        raise InputError(f"task runner must be threads or dask, got {kind!r}", settings=["runner"])
    from nst_batch.tasks.running.cluster import ClusterTaskRunner

    if address:
        from nst_batch.tasks.running.cluster import check_address

        return ClusterTaskRunner(address=check_address(address))
    import torch

    if torch.cuda.is_available():
        # One worker process per GPU, each seeing only its own device (CUDA_VISIBLE_DEVICES).
        require_extra("dask_cuda", "gpu", f"{RUNNER_ENV}=dask on a machine with GPUs (one Dask worker per GPU)")
        return ClusterTaskRunner(cluster_class="dask_cuda.LocalCUDACluster", cluster_kwargs={"threads_per_worker": 1})
    n = workers or 1
    # Each worker process gets its share of the CPUs this process may use (affinity and cgroup
    # quota, not the host's cores) for PyTorch's intra-op threads.
    from nst_batch.tasks.pair.threads import plan_threads

    threads = str(plan_threads(sharing=n).count)
    return ClusterTaskRunner(
        cluster_kwargs={
            "n_workers": n,
            "threads_per_worker": 1,
            "processes": True,
            "env": {THREADS.name: threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
        }
    )


class RunnerFromSettings(TaskRunner[PrefectFuture[Any]]):
    """The flow's default task runner, chosen when a flow run starts (Prefect enters a duplicate
    of it) from the environment, so a deployment's job variables choose it, and importing the
    flow reads no setting and imports no PyTorch. ``nst run`` passes its own runner instead."""

    def duplicate(self) -> Any:  # Prefect's says Self: this one hands over another runner, on purpose
        return make_task_runner()

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None) -> Any:
        raise RuntimeError("RunnerFromSettings only chooses the runner of a flow run; its duplicate() runs the tasks")
