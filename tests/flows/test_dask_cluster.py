"""The flow on a separately started Dask cluster (``dask scheduler`` + ``dask worker`` processes,
see tests/dask_cluster.py): runs through ``nst run --dask-address``, workers without the client's
disk, a worker SIGKILLed mid-chunk, all workers lost, an unreachable scheduler, GPU resources."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import boto3
import pytest

from benchmarks.dask_cluster import can_hide_folders
from nst_batch.cli.main import main
from tests.flows.helpers import checked_cluster, make_batch, save, upload_batch
from tests.logs import assert_no_traceback
from tests.s3_server import free_port, s3_server
from tests.synthetic import painting_like, photo_like

pytestmark = pytest.mark.slow


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _sidecars(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "summary.json"}


def test_nst_run_on_a_separately_started_cluster_and_a_rerun_computes_nothing(prefect_server, tmp_path, capsys):
    manifest = make_batch(tmp_path / "batch")
    out = tmp_path / "batch" / "out"
    with checked_cluster(tmp_path / "cluster") as cluster:
        workers = {cluster.worker_address("w1"), cluster.worker_address("w2")}
        assert main(["run", str(manifest), "--dask-address", cluster.address]) == 0
        assert "on the Dask cluster at tcp://127.0.0.1:" in capsys.readouterr().err
        summary = _summary(out)
        assert summary["counts"] == {"planned": 4, "produced": 4, "skipped": 0, "failed": 0}
        assert summary["style_targets"] == {"computed": 2, "from_cache": 0}
        sidecars = _sidecars(out)
        assert sorted(sidecars) == ["a__stripes", "a__waves", "b__stripes", "b__waves"]
        assert {s["worker"] for s in sidecars.values()} <= workers  # produced on the cluster, not in this process
        assert len({s["run_id"] for s in sidecars.values()}) == 1 and sidecars["a__waves"]["run_id"]
        assert not any(
            c["hit"] for s in sidecars.values() for c in s["style_cache"]
        )  # this run's style tasks made them: no hit
        assert len(list((out / ".cache" / "style-targets").glob("*.pt"))) == 2
        assert (out / "index.html").read_text().count('<td class="produced"') == 4

        assert main(["run", str(manifest), "--dask-address", cluster.address]) == 0
        again = _summary(out)
        assert again["counts"] == {"planned": 4, "produced": 0, "skipped": 4, "failed": 0}
        assert again["style_targets"] == {"computed": 0, "from_cache": 2}
        assert _sidecars(out) == sidecars  # nothing rewritten


def test_an_unreachable_scheduler_is_one_line_and_exit_2_within_10_s(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    began = time.monotonic()
    assert main(["run", str(manifest), "--dask-address", f"tcp://127.0.0.1:{free_port()}"]) == 2
    assert time.monotonic() - began < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nst: error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert "--dask-address" in err[0] and not (tmp_path / "out").exists()


@pytest.mark.skipif(
    not can_hide_folders(), reason="needs mount namespaces (unshare) to give workers a disk of their own"
)
def test_workers_without_the_clients_disk_run_an_s3_batch_and_refuse_local_paths(prefect_server, tmp_path, capsys):
    client_files = tmp_path / "client"  # hidden from every worker: a tmpfs over it in the worker's mount namespace
    manifest = make_batch(client_files / "batch")
    with s3_server():
        s3 = boto3.client("s3")
        remote = upload_batch(s3, "team", client_files / "batch", "s3://team/out")
        with checked_cluster(tmp_path / "cluster", hide=[client_files]) as cluster:
            assert main(["run", remote, "--dask-address", cluster.address]) == 0
            summary = json.loads(s3.get_object(Bucket="team", Key="out/summary.json")["Body"].read())
            assert summary["counts"] == {"planned": 2, "produced": 2, "skipped": 0, "failed": 0}
            assert summary["style_targets"] == {
                "computed": 1,
                "from_cache": 0,
            }  # once for the cluster, not once per worker
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team", Prefix="out/")["Contents"]]
            assert len([k for k in keys if k.startswith("out/.cache/style-targets/")]) == 1
            for name in ("a__stripes", "b__stripes"):
                sidecar = json.loads(s3.get_object(Bucket="team", Key=f"out/{name}.json")["Body"].read())
                # The targets came from this run's style task through the cache: made by this run, not a hit.
                assert sidecar["worker"].startswith("tcp://127.0.0.1:") and sidecar["style_cache"][0]["hit"] is False
            capsys.readouterr()

            assert main(["run", str(manifest), "--dask-address", cluster.address]) == 2  # local paths: refused up front
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "does not see" in err[0] and "s3://" in err[0], err
            assert not (client_files / "batch" / "out" / "summary.json").exists()
            assert (
                main(["validate", str(manifest), "--dask-address", cluster.address]) == 2
            )  # and nst validate says so too
            assert "does not see" in capsys.readouterr().err


def _many_pairs(root: Path, photos: int = 6, styles: int = 3, iterations: int = 25) -> Path:
    """``photos`` x ``styles`` pairs of about half a second each on one core, one at a time (batch:
    1): a worker killed when a pair is done is then killed in the next pair's optimisation. In a
    batch it would be writing the batch's other pairs, and a kill mid-write leaves a ``.part``
    that only the next run's plan step removes (the parts of writers no longer running)."""
    for i in range(photos):
        save(photo_like(40, 48, seed=i), root / "photos" / f"p{i}.png")
    for j in range(styles):
        save(painting_like(32, 32).roll(5 * j, -1), root / "styles" / f"s{j}.png")
    manifest = root / "m.yaml"
    manifest.write_text(
        f"defaults: {{size: 40, scales: [1.0], iterations: {iterations}}}\noutput: out\nbatch: 1\n"
        f"styles: {{{', '.join(f's{j}: styles/s{j}.png' for j in range(styles))}}}\ncontents: [photos/*.png]\n"
    )
    return manifest


def _when_produced_by(out: Path, worker: str, action, stop: threading.Event) -> threading.Thread:
    """Call ``action`` once a pair's sidecar says ``worker`` produced it (the worker is then in the
    middle of its chunk's next pair)."""

    def watch() -> None:
        while not stop.is_set():
            if any(s.get("worker") == worker for s in _safe_sidecars(out)):
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _safe_sidecars(out: Path) -> list[dict]:
    found = []
    for path in out.glob("*.json") if out.exists() else []:
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return found


def test_a_worker_killed_mid_chunk_costs_nothing(prefect_server, tmp_path):
    manifest = _many_pairs(tmp_path / "batch")  # 18 pairs: chunks of 2 on a cluster of 2 threads
    out = tmp_path / "batch" / "out"
    with checked_cluster(tmp_path / "cluster") as cluster:
        doomed = cluster.worker_address("w1")
        stop = threading.Event()
        watcher = _when_produced_by(out, doomed, lambda: cluster.kill("w1"), stop)
        try:
            assert main(["run", str(manifest), "--dask-address", cluster.address]) == 0
        finally:
            stop.set()
        watcher.join(5)
        assert "w1" not in cluster.workers, "the worker was never killed"
    summary = _summary(out)
    assert summary["counts"] == {"planned": 18, "produced": 18, "skipped": 0, "failed": 0}
    names = [r["name"] for r in summary["pairs"]]
    assert len(names) == len(set(names)) == 18  # every pair once
    sidecars = _sidecars(out)
    assert len(sidecars) == 18 and len({s["run_id"] for s in sidecars.values()}) == 1
    by_doomed = [n for n, s in sidecars.items() if s["worker"] == doomed]
    assert by_doomed  # what the killed worker finished was kept, not produced again elsewhere
    rows = {r["name"]: r for r in summary["pairs"]}
    assert all(rows[n]["worker"] == doomed and rows[n]["status"] == "produced" for n in by_doomed)
    assert not [p for p in out.rglob("*") if ".part" in p.name or p.name.startswith(".tmp")]  # nothing half-written


def test_all_workers_lost_fails_in_one_line_and_a_rerun_resumes(prefect_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NST_DASK_NO_WORKERS_S", "3")
    manifest = _many_pairs(tmp_path / "batch")
    out = tmp_path / "batch" / "out"
    with checked_cluster(tmp_path / "cluster") as cluster:
        stop = threading.Event()

        def kill_all() -> None:
            cluster.kill("w1")
            cluster.kill("w2")

        watcher = _when_produced_by(out, cluster.worker_address("w2"), kill_all, stop)
        try:
            assert main(["run", str(manifest), "--dask-address", cluster.address]) == 1
        finally:
            stop.set()
        watcher.join(5)
        printed = capsys.readouterr().out
        failed_lines = [line for line in printed.splitlines() if line.strip().startswith("FAILED")]
        assert (
            len(failed_lines) == 1
            and "had no workers for 3 s" in failed_lines[0]
            and "re-run to resume" in failed_lines[0]
        )
        first = _summary(out)
        produced = {r["name"] for r in first["pairs"] if r["status"] == "produced"}
        assert produced and first["counts"]["failed"] == 18 - len(produced)
        before = _sidecars(out)
        assert set(before) == produced  # what a broken-off chunk had written counts as produced
        assert (
            _task_runs_left_running(next(iter(before.values()))["run_id"]) == []
        )  # ended Crashed, not Running for ever

        cluster.add_worker("w3")
        assert main(["run", str(manifest), "--dask-address", cluster.address]) == 0
        second = _summary(out)
        assert second["counts"] == {
            "planned": 18,
            "produced": 18 - len(produced),
            "skipped": len(produced),
            "failed": 0,
        }
        assert all(_sidecars(out)[n] == s for n, s in before.items())  # what was written is not computed again


def test_the_scheduler_lost_mid_run_fails_the_rest_in_one_line(prefect_server, tmp_path, capsys):
    import os
    import signal

    manifest = _many_pairs(tmp_path / "batch")
    out = tmp_path / "batch" / "out"
    with checked_cluster(
        tmp_path / "cluster", allowed=None
    ) as cluster:  # the scheduler is killed: its workers' logs are all connection errors
        stop = threading.Event()
        watcher = _when_produced_by(
            out, cluster.worker_address("w1"), lambda: os.killpg(cluster.scheduler.pid, signal.SIGKILL), stop
        )
        try:
            assert main(["run", str(manifest), "--dask-address", cluster.address]) == 1
        finally:
            stop.set()
        watcher.join(5)
    failed_lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("FAILED")]
    assert len(failed_lines) == 1 and "lost the connection to the scheduler" in failed_lines[0]
    produced = {r["name"] for r in _summary(out)["pairs"] if r["status"] == "produced"}
    # Workers outlive their scheduler: a pair they were on may be written after the summary called it failed.
    assert produced and produced <= set(_sidecars(out))
    written = set(_sidecars(out))
    with checked_cluster(tmp_path / "cluster-2", workers=1) as cluster:  # a new scheduler: the re-run resumes
        assert main(["run", str(manifest), "--dask-address", cluster.address]) == 0
    again = _summary(out)
    assert {r["name"] for r in again["pairs"] if r["status"] == "skipped"} == written
    assert again["counts"] == {"planned": 18, "produced": 18 - len(written), "skipped": len(written), "failed": 0}


def _task_runs_left_running(flow_run_id: str) -> list[str]:
    """The flow run's task runs still Running once the server has recorded what it was sent."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 15
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        running = [r.name for r in runs if r.state is not None and r.state.is_running()]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(1)


def test_gpu_workers_take_every_task_when_the_cluster_has_them(prefect_server, tmp_path):
    manifest = make_batch(tmp_path / "batch")
    with checked_cluster(tmp_path / "cluster", workers=0) as cluster:
        cluster.add_worker("gpu", resources="GPU=1")
        cluster.add_worker("cpu")
        gpu = cluster.worker_address("gpu")
        assert main(["run", str(manifest), "--dask-address", cluster.address]) == 0
    sidecars = _sidecars(tmp_path / "batch" / "out")
    assert len(sidecars) == 4 and {s["worker"] for s in sidecars.values()} == {gpu}


def test_a_local_cluster_reports_each_pair_as_it_finishes_and_keeps_dask_quiet(
    prefect_server, tmp_path, capfd, monkeypatch
):
    """Pairs run in chunks on Dask workers; each is reported (``pair k/n``) as its worker finishes
    it, not all at once when its chunk ends (the first four pairs of a run once arrived together at
    35 s). Without -v no ``distributed.*`` line reaches the terminal, from this process or a worker."""
    import nst_batch.flows.stylize_batch as flow_module
    import nst_batch.tasks.presenting.progress as progress

    monkeypatch.setattr(flow_module, "chunks", lambda pairs, workers, buckets=None: [pairs])  # one chunk of all 4 pairs
    arrived: list[tuple[str, float]] = []
    handler = progress.remote_pair_finished

    def recorded(event):
        arrived.append((event[1]["name"], time.monotonic()))
        handler(event)

    monkeypatch.setattr(progress, "remote_pair_finished", recorded)
    manifest = make_batch(tmp_path)
    # Pairs long enough to tell apart, one at a time (a batch's pairs finish together).
    manifest.write_text(manifest.read_text().replace("iterations: 2", "iterations: 40") + "batch: 1\n")
    assert main(["run", str(manifest), "--runner", "dask", "--dask-workers", "1"]) == 0
    out = capfd.readouterr()
    assert_no_traceback(out.err, "nst run and its Dask workers")
    err = [line for line in out.err.splitlines() if line.strip()]
    assert not [line for line in err if "distributed." in line or "| INFO" in line], err
    assert [line.split()[1] for line in err if line.startswith("pair ")] == ["1/4", "2/4", "3/4", "4/4"]
    assert len(err) == 5, err  # "4 pairs planned ...; starting Prefect" and a line per pair
    assert sorted(name for name, _ in arrived) == ["a__stripes", "a__waves", "b__stripes", "b__waves"]
    later = sum(s["wall_time_s"] for name, s in _sidecars(tmp_path / "out").items() if name != arrived[0][0])
    assert arrived[-1][1] - arrived[0][1] >= 0.5 * later, (arrived, later)  # one by one, as each pair ended
