"""Compute threads follow the CPUs a process may use: affinity and cgroup quota, shared among the
pairs that run at once; explicit settings win; OpenMP spins briefly."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.pair.threads import CpuBudget, busy_elsewhere, cgroup_cpu_quota, parse_threads, plan_threads

AFFINITY = len(os.sched_getaffinity(0))


def fake_proc(tmp_path: Path, version: int, quota: str | tuple[int, int] | None, nested: bool = True) -> str:
    """A /proc/self with mountinfo and cgroup files, and a cgroup file system under tmp_path whose
    process cgroup is /team/job (the quota on /team when ``nested``: an ancestor's limit applies)."""
    proc, fs = tmp_path / "proc", tmp_path / "cgroupfs"
    (proc / "self").mkdir(parents=True)
    job = fs / "team" / "job"
    job.mkdir(parents=True)
    limited = job.parent if nested else job
    if version == 2:
        (proc / "self" / "mountinfo").write_text(f"30 25 0:26 / {fs} rw,nosuid - cgroup2 cgroup2 rw\n")
        (proc / "self" / "cgroup").write_text("0::/team/job\n")
        for folder in (job, job.parent):
            (folder / "cpu.max").write_text("max 100000\n")
        if quota is not None:
            (limited / "cpu.max").write_text(f"{quota} 100000\n")
    else:
        (proc / "self" / "mountinfo").write_text(
            f"31 25 0:27 / {fs} rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
            f"32 25 0:28 / {tmp_path / 'memfs'} rw,nosuid - cgroup cgroup rw,memory\n"
        )
        (proc / "self" / "cgroup").write_text("5:memory:/elsewhere\n4:cpu,cpuacct:/team/job\n")
        for folder in (job, job.parent):
            (folder / "cpu.cfs_quota_us").write_text("-1\n")
            (folder / "cpu.cfs_period_us").write_text("100000\n")
        if quota is not None:
            us, period = quota
            (limited / "cpu.cfs_quota_us").write_text(f"{us}\n")
            (limited / "cpu.cfs_period_us").write_text(f"{period}\n")
    return str(proc)


@pytest.mark.parametrize("nested", [True, False])
def test_a_cgroup_v2_quota_on_the_process_or_an_ancestor_is_read(tmp_path, nested):
    assert cgroup_cpu_quota(fake_proc(tmp_path, 2, "150000", nested)) == pytest.approx(1.5)


def test_a_cgroup_v1_quota_is_read(tmp_path):
    assert cgroup_cpu_quota(fake_proc(tmp_path, 1, (50_000, 100_000))) == pytest.approx(0.5)


@pytest.mark.parametrize("version", [1, 2])
def test_no_quota_means_no_limit(tmp_path, version):
    assert cgroup_cpu_quota(fake_proc(tmp_path, version, None)) is None


def test_unreadable_cgroup_files_mean_no_limit(tmp_path):
    assert cgroup_cpu_quota(str(tmp_path / "no-such-proc")) is None


def test_the_thread_count_follows_the_quota_not_the_cores(tmp_path):
    proc = fake_proc(tmp_path, 2, "100000")
    plan = plan_threads(environ={}, proc=proc, sample_s=0)
    assert plan.count == 1
    assert "cgroup quota 1 CPU" in plan.source


def test_without_a_quota_every_cpu_of_the_affinity_mask_is_used(tmp_path):
    plan = plan_threads(environ={}, proc=fake_proc(tmp_path, 2, None), sample_s=0)
    assert plan.count == AFFINITY
    assert plan.source.startswith("auto:")


def test_pairs_running_at_once_share_the_budget(tmp_path):
    proc = fake_proc(tmp_path, 2, "800000")  # 8 CPUs
    assert plan_threads(sharing=1, environ={}, proc=proc, sample_s=0).count == min(8, AFFINITY)
    assert plan_threads(sharing=2 * AFFINITY, environ={}, proc=proc, sample_s=0).count == 1  # never 0


def test_cpus_other_work_keeps_busy_are_left_to_it():
    assert CpuBudget(2, None, busy=0.3).cpus == 2  # background noise costs no thread
    assert CpuBudget(2, None, busy=1.0).cpus == 1
    assert CpuBudget(2, None, busy=2.0).cpus == 1  # never fewer than one
    assert CpuBudget(16, 4.0, busy=1.0).cpus == 4  # the quota still caps it
    assert CpuBudget(16, 8.0, busy=12.0).cpus == 4


def test_a_busy_process_is_seen_and_this_process_s_own_work_is_not():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert busy_elsewhere(set(os.sched_getaffinity(0)), sample_s=0.5) >= 0.5
    finally:
        busy.kill()
        busy.wait()
    import threading
    import time

    def spin(until: float) -> None:
        while time.monotonic() < until:  # busy in this process for the whole sample
            pass

    began = time.process_time()
    worker = threading.Thread(target=spin, args=(time.monotonic() + 0.6,))
    worker.start()
    seen = busy_elsewhere(set(os.sched_getaffinity(0)), sample_s=0.3)
    worker.join()
    assert time.process_time() - began > 0.3  # this process was busy while it sampled
    assert seen < 0.5


def test_explicit_settings_win_in_order(tmp_path):
    proc = fake_proc(tmp_path, 2, "100000")
    env = {"NST_THREADS": "3", "OMP_NUM_THREADS": "5"}
    assert (
        plan_threads(7, environ=env, proc=proc, sample_s=0).count,
        plan_threads(7, environ=env, proc=proc, sample_s=0).source,
    ) == (7, "threads setting")
    assert plan_threads(0, environ=env, proc=proc, sample_s=0).count == 3
    assert plan_threads(0, environ={"OMP_NUM_THREADS": "5"}, proc=proc, sample_s=0).count == 5
    assert plan_threads(0, environ={"NST_THREADS": "0"}, proc=proc, sample_s=0).count == 1  # 0: auto


def test_a_bad_count_is_one_line_naming_the_setting():
    assert parse_threads(" 4 ", "--threads") == 4
    with pytest.raises(InputError, match=r"NST_THREADS must be 0 \(auto\) or a whole number 1..1024, got 'many'"):
        plan_threads(environ={"NST_THREADS": "many"})


def test_importing_the_package_shortens_openmp_spinning_unless_the_user_set_it():
    code = "import nst_batch, os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('KMP_BLOCKTIME'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    assert subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split() == ["30000", "1"]
    env["GOMP_SPINCOUNT"] = "7"
    assert subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split() == ["7", "1"]


def _cpu_cgroup_v1() -> Path | None:
    """A writable cgroup v1 cpu controller (root on a machine that mounts one), else None."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        tail = right.split()
        if len(tail) >= 3 and tail[0] == "cgroup" and "cpu" in tail[2].split(","):
            point = Path(left.split()[4])
            if os.access(point, os.W_OK) and (point / "cpu.cfs_quota_us").exists():
                return point
    return None


def test_under_a_real_one_cpu_quota_pytorch_runs_one_thread():
    point = _cpu_cgroup_v1()
    if point is None or AFFINITY < 2:
        pytest.skip("needs a writable cgroup v1 cpu controller (root) and 2+ CPUs")
    group = point / f"nst-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup here: {exc}")
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")  # 1 CPU
        code = (
            "import os, torch; from nst_batch.tasks.pair.threads import use_threads; "
            "before = torch.get_num_threads(); plan = use_threads(); "
            "print(len(os.sched_getaffinity(0)), before, torch.get_num_threads(), plan.source)"
        )
        # Without any thread count of its own (Dask's nanny sets *_NUM_THREADS=1 for its workers,
        # and an earlier test may have left them here).
        env = {k: v for k, v in os.environ.items() if k != "NST_THREADS" and not k.endswith("_NUM_THREADS")}
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        )  # noqa: PLW1509
        cpus, before, after, source = out.stdout.split(maxsplit=3)
        assert int(before) == int(cpus) >= 2, out.stdout  # what PyTorch starts on its own: every core it sees
        assert int(after) == 1, out.stdout
        assert "cgroup quota 1 CPU" in source
    finally:
        group.rmdir()
