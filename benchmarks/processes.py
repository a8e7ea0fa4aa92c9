"""Child processes with their wall time and peak memory (the kernel's own account)."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_measured(command: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> Measured:
    """Run ``command`` to the end; ``peak_rss_mb`` is that process's own high-water mark.

    Only the direct child is counted: the commands measured here do their work in one process.
    The mark is the kernel's VmHWM of the child's address space, polled while it runs. Not
    ru_maxrss: Linux carries that across fork and exec, so a child of this (large) process would
    report at least our own peak.
    """
    began = time.perf_counter()
    peak_kb = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd) as proc:
        reader = threading.Thread(target=_drain, args=(proc, chunks := {}))
        reader.start()
        while True:
            # Read the mark before polling: once reaped, the process's /proc entry is gone.
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        reader.join()
    wall = time.perf_counter() - began
    return Measured(proc.returncode, wall, peak_kb / 1024, chunks.get("out", ""), chunks.get("err", ""))


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _drain(proc: subprocess.Popen[str], chunks: dict[str, str]) -> None:
    """Read both pipes to the end (a full pipe would block the child)."""

    def read(name: str, stream) -> None:  # type: ignore[no-untyped-def]
        chunks[name] = stream.read()

    threads = [threading.Thread(target=read, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
