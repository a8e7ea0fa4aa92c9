"""How many compute threads a pair gets on this machine: the CPUs this process may use, not the
host's core count.

PyTorch starts one OpenMP thread per core it sees (the affinity mask), whatever the container's
CPU quota and whatever else runs. OpenMP threads spin at every barrier, so a thread that the
kernel deschedules (a quota spent, a core taken by another process) stalls its whole team:
measured on 2 cores at 128 px, a pair beside two busy processes took 5.6-33 s instead of 2.3 s.
Two things fix it:

- the thread count follows the CPU *budget*, taken when a pair starts: the CPUs of the affinity
  mask less what other processes keep busy on them (sampled over 0.2 s from /proc/stat, this
  process's own use left out), cut by the cgroup CPU quota (v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us / cpu.cfs_period_us``, the tightest of the process's cgroup and its
  ancestors), divided among the pairs that run at once on the machine (:func:`plan_threads`; a
  local Dask cluster hands each worker process its share in ``NST_THREADS``). Fewer threads on
  a busy machine matter more than the spin: beside one busy process on 2 cores a 128-px pair
  took 8.6 s with 2 threads, 3.3 with 1 (idle: 2.2);
- OpenMP spins briefly, then sleeps (``nst_batch.OPENMP_DEFAULTS``, set when ``nst_batch`` is
  imported, before PyTorch loads its OpenMP runtime): GNU OpenMP's default spin is ~300,000 turns, which
  holds a core that another thread needs; 30,000 cost nothing measurable on idle cores and took
  the busy case to 2x (see docs/performance.md, "Threads").

An explicit count wins: the ``threads`` setting (manifest, ``--threads``), then ``NST_THREADS``,
then ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nst_batch.tasks.environment import OMP_NUM_THREADS, THREADS, parsed


@dataclass(frozen=True)
class ThreadPlan:
    count: int
    source: str  # how it was chosen, for the sidecar: "threads setting", "NST_THREADS", "auto: ..."


def parse_threads(text: str, setting: str) -> int:
    """A thread count as written: 1..1024, or 0 for auto."""
    return parsed(setting, str(text), THREADS.parse)


def plan_threads(
    setting: int = 0,
    sharing: int = 1,
    environ: dict[str, str] | None = None,
    proc: str = "/proc",
    sample_s: float = 0.2,
) -> ThreadPlan:
    """The compute threads of one pair: ``setting`` when > 0, else ``NST_THREADS``, else
    ``OMP_NUM_THREADS``, else the CPU budget (other work sampled for ``sample_s``; 0: not sampled)
    divided among ``sharing`` pairs running at once."""
    env = os.environ if environ is None else environ
    if setting > 0:
        return ThreadPlan(setting, "threads setting")
    for variable in (THREADS, OMP_NUM_THREADS):
        count = variable.read(env)
        if count:
            return ThreadPlan(count, variable.name)
    budget = cpu_budget(proc, sample_s=sample_s)
    count = max(1, math.floor(budget.cpus / max(1, sharing) + 1e-9))
    shared = f", shared by {sharing} pairs" if sharing > 1 else ""
    return ThreadPlan(count, f"auto: {budget.describe()}{shared}")


@dataclass(frozen=True)
class CpuBudget:
    affinity: int  # CPUs in the affinity mask
    quota: float | None  # CPUs the cgroup quota allows, None when unlimited
    busy: float = 0.0  # CPUs of the affinity mask that other processes kept busy while sampled

    @property
    def cpus(self) -> float:
        # Rounded half up: background noise (0.3 of a CPU) does not cost a thread, a busy process does.
        free = max(1.0, math.floor(self.affinity - self.busy + 0.5))
        return min(free, self.quota) if self.quota is not None else free

    def describe(self) -> str:
        quota = f"cgroup quota {self.quota:g} CPU" if self.quota is not None else "no cgroup quota"
        return f"{self.affinity} CPUs in the affinity mask, {self.busy:.1f} busy with other work, {quota}"


def cpu_budget(proc: str = "/proc", sample_s: float = 0.2) -> CpuBudget:
    try:
        cpus = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = set(range(os.cpu_count() or 1))
    return CpuBudget(len(cpus), cgroup_cpu_quota(proc), busy_elsewhere(cpus, proc, sample_s) if sample_s > 0 else 0.0)


def busy_elsewhere(cpus: set[int], proc: str = "/proc", sample_s: float = 0.2) -> float:
    """CPUs of ``cpus`` that other processes kept busy over ``sample_s`` seconds (/proc/stat's
    per-CPU times less this process's own, /proc/self/stat); 0 where they cannot be read."""
    try:
        before, own_before, began = _cpu_ticks(proc, cpus), _own_ticks(proc), time.monotonic()
        time.sleep(sample_s)
        after, own_after, ended = _cpu_ticks(proc, cpus), _own_ticks(proc), time.monotonic()
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = (ended - began) * os.sysconf("SC_CLK_TCK")
    busy = (after[0] - before[0]) - (own_after - own_before)
    return max(0.0, busy / ticks) if ticks > 0 else 0.0


def _cpu_ticks(proc: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, all) ticks summed over ``cpus`` from /proc/stat (idle and iowait are not busy)."""
    busy = total = 0
    for line in (Path(proc) / "stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            numbers = [int(v) for v in values[:8]]
            total += sum(numbers)
            busy += sum(numbers) - numbers[3] - numbers[4]
    return busy, total


def _own_ticks(proc: str) -> int:
    """This process's user and system ticks, all its threads (/proc/self/stat fields 14 and 15)."""
    fields = (Path(proc) / "self" / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cgroup_cpu_quota(proc: str = "/proc") -> float | None:
    """CPUs that the tightest CPU quota on this process's cgroups (and their ancestors) allows,
    or None where none is set or the files cannot be read."""
    try:
        mounts = _cgroup_mounts(Path(proc) / "self" / "mountinfo")
        memberships = _memberships(Path(proc) / "self" / "cgroup")
    except OSError:
        return None
    quotas: list[float] = []
    for version, controllers, root, mountpoint in mounts:
        for member_version, member_controllers, path in memberships:
            if version != member_version or (version == 1 and "cpu" not in controllers & member_controllers):
                continue
            quotas += [
                q for q in (_quota_in(folder, version) for folder in _folders(mountpoint, root, path)) if q is not None
            ]
    return min(quotas) if quotas else None


def _cgroup_mounts(mountinfo: Path) -> list[tuple[int, set[str], str, str]]:
    """(version, controllers, the cgroup path at the mount's root, mount point) of each cgroup mount."""
    out: list[tuple[int, set[str], str, str]] = []
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if tail[0] == "cgroup2":
            out.append((2, set(), root, mountpoint))
        elif tail[0] == "cgroup":
            out.append((1, set(tail[2].split(",")), root, mountpoint))
    return out


def _memberships(cgroup: Path) -> list[tuple[int, set[str], str]]:
    """(version, controllers, path) of each line of /proc/self/cgroup."""
    out = []
    for line in cgroup.read_text().splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        out.append((2, set(), path) if number == "0" and not controllers else (1, set(controllers.split(",")), path))
    return out


def _folders(mountpoint: str, root: str, path: str) -> list[Path]:
    """The process's cgroup folder under a mount and its ancestors up to the mount. Inside a
    container the mount's root is often the container's own cgroup, or the path is not under
    it (a cgroup namespace): then the mount point itself is the process's cgroup."""
    relative = path[len(root) :] if root != "/" and path.startswith(root) else (path if root == "/" else "")
    folder = Path(mountpoint) / relative.strip("/")
    top = Path(mountpoint)
    chain = [folder]
    while chain[-1] != top and top in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _quota_in(folder: Path, version: int) -> float | None:
    try:
        if version == 2:
            quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or "100000")
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def _unescape(field: str) -> str:
    """mountinfo writes spaces, tabs, newlines and backslashes in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


_applied: ThreadPlan | None = None
_planned: tuple[float, int, int, ThreadPlan] | None = None  # (when, setting, sharing, plan)
_lock = threading.Lock()
# A plan is reused for pairs that start within this many seconds: sampling the load costs 0.2 s,
# which a collection of small pairs would pay at every pair.
REPLAN_AFTER_S = 10.0


def use_threads(setting: int = 0, sharing: int = 1) -> ThreadPlan:
    """Set PyTorch's intra-op threads for the pair about to run (process-wide; a CPU runs one pair
    at a time per process) and remember the plan for the run's record."""
    import torch

    global _applied, _planned
    now = time.monotonic()
    if _planned is not None and _planned[1:3] == (setting, sharing) and now - _planned[0] < REPLAN_AFTER_S:
        plan = _planned[3]
    else:
        plan = plan_threads(setting, sharing)
        _planned = (now, setting, sharing, plan)
    with _lock:
        if torch.get_num_threads() != plan.count:
            torch.set_num_threads(plan.count)
        _applied = plan
    return plan


def applied() -> ThreadPlan | None:
    """The plan :func:`use_threads` last applied in this process, if any."""
    return _applied
