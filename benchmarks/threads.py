"""Threads on a busy or quota-limited machine: `nst stylize` at 128 and 256 px on idle cores,
beside one and two competing CPU-bound processes, and under a 1-CPU cgroup quota (where this
process may make a cgroup: root with a cgroup v1 cpu controller or cgroup v2), with the settings
of before (PyTorch's thread count, one per core; GNU OpenMP's default spin of 300,000 turns)
against today's (threads from the CPU budget, 30,000 turns), interleaved rep by rep.

    python -m benchmarks.threads [--reps 3] [--images DIR] [--json PATH]

Each figure is the stylization's own wall time (the sidecar's ``wall_time_s``: model loading and
interpreter start-up excluded), the median over reps; the slow-down is that over the same
settings' idle median. Run it on a machine where nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_IMAGES, report

CASES = {
    "128 px x 30 it": ["--size", "128", "--iterations", "30"],
    "256 px x 10 it": ["--size", "256", "--iterations", "10"],
}
AFFINITY = len(os.sched_getaffinity(0))
SETTINGS = {
    # What main did: PyTorch's own count (every core in the affinity mask) and libgomp's default spin.
    "before": {"NST_THREADS": str(AFFINITY), "GOMP_SPINCOUNT": "300000"},
    "now": {},
}
CONDITIONS = ("idle", "beside 1 busy", "beside 2 busy", "1-CPU quota")


def _busy(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


class Quota:
    """A cgroup with a 1-CPU quota that a child process joins, or None where none can be made."""

    def __init__(self) -> None:
        self.procs: Path | None = None
        self.folder: Path | None = None
        v1 = Path("/sys/fs/cgroup/cpu")
        v2 = Path("/sys/fs/cgroup")
        name = f"nst-bench-{uuid.uuid4().hex[:8]}"
        try:
            if (v1 / "cpu.cfs_quota_us").exists():
                self.folder = v1 / name
                self.folder.mkdir()
                (self.folder / "cpu.cfs_period_us").write_text("100000")
                (self.folder / "cpu.cfs_quota_us").write_text("100000")
            elif (v2 / "cgroup.controllers").exists() and "cpu" in (v2 / "cgroup.subtree_control").read_text():
                self.folder = v2 / name
                self.folder.mkdir()
                (self.folder / "cpu.max").write_text("100000 100000")
            else:
                return
            self.procs = self.folder / "cgroup.procs"
        except OSError:
            self.close()

    def join(self) -> None:
        assert self.procs is not None
        self.procs.write_text(str(os.getpid()))

    def close(self) -> None:
        if self.folder is not None and self.folder.exists():
            try:
                self.folder.rmdir()
            except OSError:
                pass
        self.procs = None


def run_one(
    content: Path, style: Path, flags: list[str], settings: dict[str, str], quota: Quota | None, workdir: Path
) -> float:
    meta = workdir / f"{uuid.uuid4().hex}.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NST_THREADS", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    }
    env.update(settings)
    command = [
        sys.executable,
        "-m",
        "nst_batch.cli.main",
        "stylize",
        str(content),
        str(style),
        "-o",
        str(workdir / "out.png"),
        "--quiet",
        "--metadata",
        str(meta),
        *flags,
    ]
    subprocess.run(command, env=env, check=True, preexec_fn=quota.join if quota else None)  # noqa: PLW1509
    return float(json.loads(meta.read_text())["wall_time_s"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    images = Path(args.images)
    content, style = images / "content" / "tubingen.jpg", images / "style" / "starry_night.jpg"
    quota = Quota()
    conditions = [c for c in CONDITIONS if c != "1-CPU quota" or quota.procs is not None]
    times: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for condition in conditions:
                busy = _busy({"beside 1 busy": 1, "beside 2 busy": 2}.get(condition, 0))
                time.sleep(0.5)
                try:
                    for case, flags in CASES.items():
                        for name, settings in SETTINGS.items():  # interleaved: before, now, before, now, ...
                            seconds = run_one(
                                content,
                                style,
                                flags,
                                settings,
                                quota if condition == "1-CPU quota" else None,
                                Path(tmp),
                            )
                            times.setdefault((case, condition, name), []).append(seconds)
                            print(
                                f"rep {rep + 1}: {case}, {condition}, {name}: {seconds:.2f} s",
                                file=sys.stderr,
                                flush=True,
                            )
                finally:
                    for b in busy:
                        b.kill()
                        b.wait()
    quota.close()
    results: dict[str, Any] = {
        "machine": {"affinity_cpus": AFFINITY, "load_before": os.getloadavg()},
        "reps": args.reps,
        "rows": [],
    }
    lines = [
        f"| case | condition | {' | '.join(f'{n}: s (slow-down)' for n in SETTINGS)} |",
        "|---|---|" + "---|" * len(SETTINGS),
    ]
    for case in CASES:
        idle = {name: statistics.median(times[(case, "idle", name)]) for name in SETTINGS}
        for condition in conditions:
            cells = []
            row: dict[str, Any] = {"case": case, "condition": condition}
            for name in SETTINGS:
                values = times[(case, condition, name)]
                med = statistics.median(values)
                row[name] = {
                    "median_s": round(med, 3),
                    "all_s": [round(v, 3) for v in values],
                    "slowdown": round(med / idle[name], 2),
                    "worst_slowdown": round(max(values) / idle[name], 2),
                }
                cells.append(f"{med:.2f} ({med / idle[name]:.1f}x, worst {max(values) / idle[name]:.1f}x)")
            results["rows"].append(row)
            lines.append(f"| {case} | {condition} | {' | '.join(cells)} |")
    return report("\n".join(lines), results, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
