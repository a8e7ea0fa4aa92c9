"""The batch on a Dask cluster started apart from it (``dask scheduler`` + ``dask worker`` on
127.0.0.1, one thread each): throughput with 1 and 2 workers on small pairs, orchestration per
pair on the cluster, the Prefect server's load per 10,000 pairs, and planning 1,000,000 pairs.

    python -m benchmarks.cluster [--pairs 48] [--workers 1,2] [--tiny-pairs 2000] [--plan-pairs 1000000]
                                 [--workdir .bench/cluster] [--json PATH]

- Throughput: ``nst run --dask-address`` on ``--pairs`` small pairs (64 px, 30 iterations), pairs
  per second of the flow's own wall time; workers run one PyTorch thread each, as one worker per
  core (or per GPU) does on a cluster.
- Orchestration per pair: on ``--tiny-pairs`` pairs of 16 px and 1 iteration, the worker-seconds
  the cluster spent on anything but producing pairs, per pair: (flow wall x workers - the pairs'
  own wall times) / pairs.
- Prefect's load, from the tiny run, on a ``prefect server`` of its own: task runs created, HTTP
  requests it answered (its access log; task-run states and events travel over one websocket per
  process, not counted), and the growth of its SQLite database, each scaled to 10,000 pairs.
- Planning: ``load_plan`` of a manifest of 10,000 photos x 100 styles in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import int_list, report
from benchmarks.dask_cluster import dask_cluster
from benchmarks.processes import run_measured
from benchmarks.scale import _check, make_images, nst, python, write_manifest

TARGETS = {"speedup_2_workers": 1.7, "plan_peak_rss_mb": 1536, "plan_s": 60.0}
_REQUEST = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) (/api/[^ ?"]*)')


def small_manifest(root: Path, pairs: int, size: int, iterations: int, name: str) -> Path:
    styles = 4
    make_images(root, max(1, pairs // styles), styles, side=size)
    manifest = write_manifest(root, name, styles, output=f"out-{name}")
    manifest.write_text(
        manifest.read_text().replace(
            "{size: 16, scales: [1.0], iterations: 1}", f"{{size: {size}, scales: [1.0], iterations: {iterations}}}"
        )
    )
    return manifest


class PrefectServer:
    """``prefect server start`` with its access log on, in a home of its own."""

    def __init__(self, home: Path, port: int) -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        self.home, self.log = home, home / "server.log"
        self.url = f"http://127.0.0.1:{port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_LOGGING_LEVEL": "INFO",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        self.env.pop("PREFECT_PROFILES_PATH", None)
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"prefect server did not start:\n{self.log.read_text()[-2000:]}")

    def requests(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for match in _REQUEST.finditer(self.log.read_text(errors="replace")):
            key = f"{match[1]} {re.sub(r'/[0-9a-f-]{36}', '/{id}', match[2])}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def task_runs(self) -> int:
        request = urllib.request.Request(
            f"{self.url}/task_runs/count", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(json.loads(answer.read()))

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.home.glob("prefect.db*"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def run_on_cluster(manifest: Path, workers: int, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """``nst run --dask-address`` on a fresh cluster of ``workers`` one-thread workers."""
    summary_path = workdir / f"summary-{manifest.stem}-{workers}.json"
    shutil.rmtree(manifest.parent / f"out-{manifest.stem}", ignore_errors=True)
    with dask_cluster(
        workdir / f"cluster-{manifest.stem}-{workers}", workers=workers, env={"PREFECT_API_URL": env["PREFECT_API_URL"]}
    ) as cluster:
        measured = _check(
            f"nst run on {workers} workers",
            run_measured(
                nst("run", str(manifest), "--dask-address", cluster.address, "--summary-json", str(summary_path)),
                env=env,
            ),
        )
    summary = json.loads(summary_path.read_text())
    produced = summary["counts"]["produced"]
    pairs_s = sum(r.get("wall_time_s") or 0 for r in summary["pairs"])
    flow_s = summary["wall_time_s"]
    return {
        "workers": workers,
        "pairs": summary["counts"]["planned"],
        "produced": produced,
        "failed": summary["counts"]["failed"],
        "flow_s": flow_s,
        "command_s": round(measured.wall_s, 1),
        "pairs_own_s": round(pairs_s, 2),
        "pairs_per_s": round(produced / max(flow_s, 1e-9), 3),
        "orchestration_worker_ms_per_pair": round(1000 * (flow_s * workers - pairs_s) / max(1, produced), 1),
        "client_peak_rss_mb": round(measured.peak_rss_mb),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    server = PrefectServer(workdir / "prefect-home", args.port)
    env = {**server.env, "PYTHONUNBUFFERED": "1"}
    try:
        small = small_manifest(workdir / "small", args.pairs, 64, 30, "small")
        throughput = [run_on_cluster(small, n, workdir, env) for n in args.workers]
        tiny = small_manifest(workdir / "tiny", args.tiny_pairs, 16, 1, "tiny")
        before = (server.task_runs(), sum(server.requests().values()), server.db_bytes())
        orchestration = run_on_cluster(tiny, max(args.workers), workdir, env)
        time.sleep(5)  # the server writes what its event stream received
        after = (server.task_runs(), server.requests(), server.db_bytes())
    finally:
        server.stop()
    scale = 10_000 / max(1, orchestration["pairs"])
    load = {
        "task_runs_per_10k_pairs": round((after[0] - before[0]) * scale),
        "http_requests_per_10k_pairs": round((sum(after[1].values()) - before[1]) * scale),
        "db_growth_mb_per_10k_pairs": round((after[2] - before[2]) * scale / 2**20, 1),
        "http_requests_by_endpoint_total": dict(sorted(after[1].items(), key=lambda kv: -kv[1])[:12]),
    }
    by_workers = {t["workers"]: t for t in throughput}
    speedup = (
        by_workers[max(by_workers)]["pairs_per_s"] / by_workers[min(by_workers)]["pairs_per_s"]
        if len(by_workers) > 1
        else None
    )
    return {
        "machine_cpus": os.cpu_count(),
        "throughput": throughput,
        "speedup_2_workers": round(speedup, 2) if speedup else None,
        "orchestration": orchestration,
        "prefect_load": load,
        "plan": plan_many(workdir / "plan", args.plan_pairs),
    }


def plan_many(root: Path, pairs: int) -> dict[str, Any]:
    styles = 100
    make_images(root, max(1, pairs // styles), styles)
    manifest = write_manifest(root, "m.yaml", styles)
    measured = _check(
        "plan",
        run_measured(
            python(f"""
        import time; t = time.perf_counter()
        from nst_batch.tasks.planning.plan import load_plan
        plan = load_plan({str(manifest)!r}); print(len(plan.pairs), time.perf_counter() - t)""")
        ),
    )
    planned, seconds = measured.stdout.split()
    return {"pairs": int(planned), "plan_s": round(float(seconds), 1), "plan_peak_rss_mb": round(measured.peak_rss_mb)}


def table(r: dict[str, Any]) -> str:
    lines = ["| workers | pairs | flow s | pairs/s | orchestration (worker-ms per pair) |", "|---|---|---|---|---|"]
    lines += [
        f"| {t['workers']} | {t['produced']} | {t['flow_s']} | {t['pairs_per_s']} | "
        f"{t['orchestration_worker_ms_per_pair']} |"
        for t in r["throughput"]
    ]
    o, load, plan = r["orchestration"], r["prefect_load"], r["plan"]
    speedup = r["speedup_2_workers"]
    verdict = (
        ""
        if speedup is None
        else f"{'met' if speedup >= TARGETS['speedup_2_workers'] else 'missed'} (>= {TARGETS['speedup_2_workers']})"
    )
    lines += [
        "",
        f"speed-up, most workers over one: {speedup} {verdict}",
        f"tiny pairs ({o['produced']} on {o['workers']} workers): {o['pairs_per_s']} pairs/s, orchestration "
        f"{o['orchestration_worker_ms_per_pair']} worker-ms per pair, client peak RSS {o['client_peak_rss_mb']} MB",
        f"Prefect per 10,000 pairs: {load['task_runs_per_10k_pairs']} task runs, "
        f"{load['http_requests_per_10k_pairs']} HTTP "
        f"requests, database +{load['db_growth_mb_per_10k_pairs']} MB",
        f"plan {plan['pairs']} pairs: {plan['plan_s']} s "
        f"({'met' if plan['plan_s'] <= TARGETS['plan_s'] else 'missed'} <= 60), "
        f"peak RSS {plan['plan_peak_rss_mb']} MB "
        f"({'met' if plan['plan_peak_rss_mb'] <= TARGETS['plan_peak_rss_mb'] else 'missed'} <= 1536)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=48, help="small pairs for the throughput runs")
    p.add_argument("--workers", type=int_list, default=[1, 2], help="cluster sizes to compare (default 1,2)")
    p.add_argument("--tiny-pairs", type=int, default=2000, help="tiny pairs for orchestration and Prefect's load")
    p.add_argument("--plan-pairs", type=int, default=1_000_000)
    p.add_argument("--port", type=int, default=4291, help="the benchmark's own Prefect server")
    p.add_argument("--workdir", default=".bench/cluster")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    return report(table(results := measure(args)), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
