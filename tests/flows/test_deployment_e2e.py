"""End to end as a user runs it: a real `prefect server` on 127.0.0.1, the project's prefect.yaml
deployed to a process work pool, a worker, and `prefect deployment run ... --watch`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmarks.dask_cluster import dask_cluster
from tests.flows.helpers import make_batch
from tests.s3_server import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout}s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_deploy_run_and_watch_on_a_real_server(tmp_path):
    manifest = make_batch(tmp_path / "batch")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2", "PWD": str(ROOT),
           "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_PROFILES_PATH", None)

    def prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    with server_log.open("w") as slog:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env,
                                  stdout=slog, stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/api/health", server, server_log)
        prefect("work-pool", "create", "nst-local", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        with worker_log.open("w") as wlog:
            worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "nst-local"], cwd=ROOT, env=env,
                                      stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True)
        run = prefect("deployment", "run", "stylize-batch/default", "--param", f"manifest={manifest}",
                      "--param", f"output={tmp_path / 'gallery'}", "--watch", "--watch-timeout", "600", timeout=660)
        assert "Completed" in run.stdout, run.stdout[-2000:]

        out = tmp_path / "gallery"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"] == {"planned": 4, "produced": 4, "skipped": 0, "failed": 0}
        for name in ("a__stripes", "a__waves", "b__stripes", "b__waves"):
            assert (out / f"{name}.png").exists()
            assert json.loads((out / f"{name}.json").read_text())["content"]["sha256"]
        assert (out / "index.html").read_text().count('<td class="produced"') == 4

        # The same deployment on a Dask cluster started apart from it, chosen by the flow run's job
        # variables (NST_TASK_RUNNER, NST_DASK_ADDRESS), as an operator points runs at a cluster.
        with dask_cluster(tmp_path / "cluster", env={"PREFECT_API_URL": env["PREFECT_API_URL"]}) as cluster:
            workers = {cluster.worker_address("w1"), cluster.worker_address("w2")}
            cluster_env = json.dumps({"NST_TASK_RUNNER": "dask", "NST_DASK_ADDRESS": cluster.address})
            run = prefect("deployment", "run", "stylize-batch/default", "--param", f"manifest={manifest}",
                          "--param", f"output={tmp_path / 'on-cluster'}", "--job-variable", f"env={cluster_env}",
                          "--watch", "--watch-timeout", "600", timeout=660)
        assert "Completed" in run.stdout, run.stdout[-2000:]
        on_cluster = tmp_path / "on-cluster"
        assert json.loads((on_cluster / "summary.json").read_text())["counts"]["produced"] == 4
        assert {json.loads((on_cluster / f"{n}.json").read_text())["worker"] for n in ("a__stripes", "b__waves")} <= workers

        nightly = prefect("deployment", "inspect", "stylize-batch/nightly-gallery").stdout
        assert "0 2 * * *" in nightly and "CANCEL_NEW" in nightly and "'limit': 1" in nightly
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
