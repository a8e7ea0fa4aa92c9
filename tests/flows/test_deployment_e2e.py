"""End to end as a user runs it: a real `prefect server` on 127.0.0.1 (its scheduler included),
the project's prefect.yaml deployed to a process work pool, a worker, `prefect deployment run ...
--watch`, and the nightly deployment's schedule creating a run that the worker completes. The
server's and the worker's logs must hold no traceback: a scheduler that fails every minute passes
every other check."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.flows.helpers import checked_cluster, make_batch
from tests.logs import assert_no_traceback
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
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PWD": str(ROOT),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    }
    env.pop("PREFECT_PROFILES_PATH", None)

    def prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    with server_log.open("w") as slog:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=slog,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = None
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/api/health", server, server_log)
        prefect("work-pool", "create", "nst-local", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        with worker_log.open("w") as wlog:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "nst-local"],
                cwd=ROOT,
                env=env,
                stdout=wlog,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = prefect(
            "deployment",
            "run",
            "stylize-batch/default",
            "--param",
            f"manifest={manifest}",
            "--param",
            f"output={tmp_path / 'gallery'}",
            "--watch",
            "--watch-timeout",
            "600",
            timeout=660,
        )
        assert "Completed" in run.stdout, run.stdout[-2000:]
        # --watch prints every event of the run: a task's three states, and each artifact created
        # or updated. Pairs too short to watch make none of their own (before: 4 progress
        # artifacts, their updates and 4 image collections, 24 artifact events for these 4 pairs).
        events = [line for line in run.stdout.splitlines() if line.startswith("●")]
        artifact_events = [line for line in events if "prefect.artifact" in line]
        assert len(artifact_events) <= 5, "\n".join(artifact_events)
        print(
            f"\n--watch of 4 pairs: {len(run.stdout.splitlines())} lines, {len(events)} events, "
            f"{len(artifact_events)} of artifacts"
        )

        out = tmp_path / "gallery"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"] == {"planned": 4, "produced": 4, "skipped": 0, "failed": 0}
        for name in ("a__stripes", "a__waves", "b__stripes", "b__waves"):
            assert (out / f"{name}.png").exists()
            assert json.loads((out / f"{name}.json").read_text())["content"]["sha256"]
        assert (out / "index.html").read_text().count('<td class="produced"') == 4

        # The same deployment on a Dask cluster started apart from it, chosen by the flow run's job
        # variables (NST_TASK_RUNNER, NST_DASK_ADDRESS), as an operator points runs at a cluster.
        with checked_cluster(tmp_path / "cluster", env={"PREFECT_API_URL": env["PREFECT_API_URL"]}) as cluster:
            workers = {cluster.worker_address("w1"), cluster.worker_address("w2")}
            cluster_env = json.dumps({"NST_TASK_RUNNER": "dask", "NST_DASK_ADDRESS": cluster.address})
            run = prefect(
                "deployment",
                "run",
                "stylize-batch/default",
                "--param",
                f"manifest={manifest}",
                "--param",
                f"output={tmp_path / 'on-cluster'}",
                "--job-variable",
                f"env={cluster_env}",
                "--watch",
                "--watch-timeout",
                "600",
                timeout=660,
            )
        assert "Completed" in run.stdout, run.stdout[-2000:]
        on_cluster = tmp_path / "on-cluster"
        assert json.loads((on_cluster / "summary.json").read_text())["counts"]["produced"] == 4
        assert {
            json.loads((on_cluster / f"{n}.json").read_text())["worker"] for n in ("a__stripes", "b__waves")
        } <= workers

        nightly = prefect("deployment", "inspect", "stylize-batch/nightly-gallery").stdout
        assert "0 2 * * *" in nightly and "CANCEL_NEW" in nightly and "'limit': 1" in nightly

        # The nightly deployment as the file defines it, with its schedule moved to come due in
        # 20 s and its manifest pointed at the test's batch: the server's scheduler must create
        # the run, and the worker must run it to Completed.
        due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=20)
        soon = _nightly_due_at(due, manifest, tmp_path / "nightly-out", tmp_path / "prefect.soon.yaml")
        prefect("--no-prompt", "deploy", "--prefect-file", str(soon), "--name", "nightly-gallery")
        run = _wait_for_scheduled_run(env, "stylize-batch/nightly-gallery", server_log, timeout=300)
        assert run["auto_scheduled"], run
        assert run["state"] == "COMPLETED", run
        assert run["states"][0] == "SCHEDULED", run["states"]
        assert json.loads((tmp_path / "nightly-out" / "summary.json").read_text())["counts"]["produced"] == 4
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
    assert_no_traceback(server_log, "the Prefect server")
    assert_no_traceback(worker_log, "the Prefect worker")


def _nightly_due_at(due: datetime.datetime, manifest: Path, output: Path, path: Path) -> Path:
    """prefect.yaml with the nightly deployment's cron replaced by an interval anchored at ``due``
    (one occurrence within the test), on the test's manifest and output."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    nightly = next(d for d in config["deployments"] if d["name"] == "nightly-gallery")
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
    nightly["schedules"] = [{"interval": 3600, "anchor_date": due.isoformat(), "timezone": "UTC"}]
    nightly["parameters"] = {
        **nightly["parameters"],
        "manifest": str(manifest),
        "output": str(output),
    }  # decode_check kept
    path.write_text(yaml.safe_dump(config))
    return path


def _wait_for_scheduled_run(
    env: dict[str, str], deployment: str, server_log: Path, timeout: float
) -> dict[str, object]:
    """The first run of ``deployment`` once it reached a final state: its state, whether the
    scheduler made it, and the names of the states it went through. A traceback in the server's
    log fails at once (a scheduler that raises would otherwise cost the whole timeout)."""
    code = f"""
import asyncio, json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
async def main():
    async with get_client() as client:
        d = await client.read_deployment_by_name({deployment!r})
        runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id])))
        out = []
        for r in runs:
            states = await client.read_flow_run_states(r.id)
            out.append({{"auto_scheduled": r.auto_scheduled, "state": r.state_type.value if r.state_type else None,
                         "states": [s.type.value for s in sorted(states, key=lambda s: s.timestamp)]}})
        print(json.dumps(out))
asyncio.run(main())
"""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        assert_no_traceback(server_log, "the Prefect server")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        final = [r for r in seen if r["state"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        if final:
            return final[0]
        time.sleep(3)
    pytest.fail(f"no run of {deployment} finished within {timeout:.0f} s; runs: {seen}")
