"""Child processes with their wall time and peak memory (the kernel's own account, via wait4)."""

from __future__ import annotations

import os
import subprocess
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
    """Run ``command`` to the end; ``peak_rss_mb`` is that process's own high-water mark (ru_maxrss).

    Only the direct child is counted: the commands measured here do their work in one process.
    """
    began = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd) as proc:
        # communicate() reads both pipes to the end; the child is then reaped by wait4 so that
        # its rusage is ours to read (Popen.wait would reap it first and drop the rusage).
        stdout, stderr = _drain(proc)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    return Measured(proc.returncode, wall, usage.ru_maxrss / 1024, stdout, stderr)


def _drain(proc: subprocess.Popen[str]) -> tuple[str, str]:
    import threading

    chunks: dict[str, str] = {}

    def read(name: str, stream) -> None:  # type: ignore[no-untyped-def]
        chunks[name] = stream.read()

    threads = [threading.Thread(target=read, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return chunks.get("out", ""), chunks.get("err", "")
