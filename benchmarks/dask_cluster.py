"""A real Dask cluster on 127.0.0.1, for the tests and the cluster benchmark, started the way an
operator starts one: ``dask scheduler`` and ``dask worker`` processes (the ``distributed`` command
lines), each worker with its own working directory and temp folder. A worker can be started with
some folders hidden from it (a tmpfs mounted over them in a mount namespace of its own), which
makes it a worker on another machine as far as files go: it shares nothing with the client but
the network.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")


@functools.cache
def _unshare_flags() -> tuple[str, ...] | None:
    """The ``unshare`` flags that give a process a mount namespace here (as root, or through a user
    namespace), or None where neither is allowed."""
    if not shutil.which("unshare"):
        return None
    for flags in (("--mount",), ("--user", "--map-root-user", "--mount")):
        if (
            subprocess.run(["unshare", *flags, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True).returncode
            == 0
        ):
            return flags
    return None


def can_hide_folders() -> bool:
    """Whether this machine lets us start a process in a mount namespace of its own."""
    return _unshare_flags() is not None


def _hiding(folders: list[Path]) -> list[str]:
    """A command prefix that runs the rest with an empty tmpfs over each of ``folders``."""
    mounts = " && ".join(f"mount -t tmpfs tmpfs '{f}'" for f in folders)
    return ["unshare", *(_unshare_flags() or ()), "sh", "-c", f'{mounts} && exec "$@"', "sh"]


class DaskCluster:
    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = {
            **os.environ,
            **(env or {}),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def start_scheduler(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        file = self.root / "scheduler.json"
        file.unlink(missing_ok=True)  # a file left by an earlier cluster would name its address
        self.scheduler = self._spawn(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
            cwd=self.root,
        )
        self._wait(
            lambda: file.exists() and json.loads(file.read_text() or "{}").get("address"), "the scheduler", "scheduler"
        )
        self.address = json.loads(file.read_text())["address"]
        return self.address

    def add_worker(
        self,
        name: str,
        *,
        resources: str | None = None,
        hide: list[Path] = (),
        nanny: bool = False,  # type: ignore[assignment]
        wait: bool = True,
    ) -> subprocess.Popen[bytes]:
        """A worker (one thread) in a folder of its own, its temp folder in there too."""
        home = self.root / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        command = [
            DASK,
            "worker",
            self.address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--name",
            name,
            "--local-directory",
            str(home),
            "--nanny" if nanny else "--no-nanny",
        ]
        if resources:
            command += ["--resources", resources]
        before = self.worker_count()
        env = {"TMPDIR": str(home / "tmp")}
        self.workers[name] = self._spawn(name, [*(_hiding(list(hide)) if hide else []), *command], cwd=home, env=env)
        if wait:
            self._wait(lambda: self.worker_count() > before, f"worker {name}", name)
        return self.workers[name]

    def worker_count(self) -> int:
        if not self.address:
            return 0
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            return len(client.nthreads())

    def worker_address(self, name: str) -> str:
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            return next(a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w.get("name") == name)

    def kill(self, name: str) -> None:
        """SIGKILL the worker (and anything it started): a machine lost, nothing said to anyone."""
        process = self.workers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for name in list(self.workers):
            self.kill(name)
        if self.scheduler is not None and self.scheduler.poll() is None:
            os.killpg(self.scheduler.pid, signal.SIGKILL)
            self.scheduler.wait(timeout=10)

    def _spawn(
        self, name: str, command: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                command,
                cwd=cwd,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(self, ready: object, what: str, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if ready():  # type: ignore[operator]
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{what} did not start within {timeout:g} s:\n{self.log(name)[-3000:]}")


@contextlib.contextmanager
def dask_cluster(
    root: Path, workers: int = 2, env: dict[str, str] | None = None, **worker_options: object
) -> Iterator[DaskCluster]:
    cluster = DaskCluster(root, env)
    try:
        cluster.start_scheduler()
        for i in range(workers):
            cluster.add_worker(f"w{i + 1}", **worker_options)  # type: ignore[arg-type]
        yield cluster
    finally:
        cluster.stop()
