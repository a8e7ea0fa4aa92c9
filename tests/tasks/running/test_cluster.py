"""The cluster adaptation without a cluster: a rerun chunk's accounting, what a lost task's row
says, the no-workers setting, and a runner that travels to workers (pickled)."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
from distributed.client import FutureCancelledError

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.pair.done import written_by_this_run
from nst_batch.tasks.pair.pipeline import run_pair
from nst_batch.tasks.planning.plan import load_plan
from nst_batch.tasks.running.cluster import ClusterTaskRunner, failure_reason, no_workers_s
from tests.flows.helpers import make_batch


@pytest.fixture
def planned(tmp_path):
    plan = load_plan(str(make_batch(tmp_path)))
    return plan, replace(plan.settings, run_id="run-1")


def _sidecar(settings, name: str) -> dict:
    return json.loads(Path(settings.sidecar_uri(name)).read_text())


def test_a_pair_this_run_wrote_counts_as_produced_again_not_skipped(planned):
    plan, settings = planned
    pair = plan.pairs[0]
    first = run_pair(pair, settings)
    written = Path(settings.output_uri(pair.name)).stat().st_mtime_ns
    assert first.status == "produced" and _sidecar(settings, pair.name)["run_id"] == "run-1"
    # The chunk runs again (its worker died after this pair): the same run finds it done.
    again = run_pair(pair, settings)
    assert again.status == "produced" and again.final_losses == first.final_losses
    assert again.target_keys == first.target_keys and again.computed_keys == first.computed_keys
    assert Path(settings.output_uri(pair.name)).stat().st_mtime_ns == written  # not written twice
    forced = run_pair(pair, settings, force=True)  # --force does not redo what this very run made
    assert forced.status == "produced" and Path(settings.output_uri(pair.name)).stat().st_mtime_ns == written
    # Another run: skipped, as ever; forced, produced again.
    other = replace(settings, run_id="run-2")
    assert run_pair(pair, other).status == "skipped"
    assert run_pair(pair, other, force=True).status == "produced" and _sidecar(settings, pair.name)["run_id"] == "run-2"


def test_a_broken_off_chunk_keeps_the_pairs_it_wrote(planned):
    plan, settings = planned
    done, not_done = plan.pairs[0], plan.pairs[1]
    run_pair(done, settings)
    assert written_by_this_run(done, settings).status == "produced"
    assert written_by_this_run(not_done, settings) is None
    assert written_by_this_run(done, replace(settings, run_id="run-2")) is None  # written, but by another run
    Path(settings.output_uri(done.name)).unlink()
    assert written_by_this_run(done, settings) is None  # a sidecar without its output is not done


def test_a_cancelled_task_says_why_in_one_line():
    lost = FutureCancelledError(
        "stylize-pairs-abc", reason="no-workers", msg="the Dask cluster at tcp://x:1 had no workers\nfor 3 s"
    )
    assert failure_reason(lost) == "the Dask cluster at tcp://x:1 had no workers for 3 s"
    assert failure_reason(RuntimeError("worker\n  died")) == "worker died"
    assert failure_reason(KeyError()) == "KeyError"


def test_no_workers_s_is_a_positive_number_of_seconds(monkeypatch):
    monkeypatch.delenv("NST_DASK_NO_WORKERS_S", raising=False)
    assert no_workers_s() == 120.0
    monkeypatch.setenv("NST_DASK_NO_WORKERS_S", "7.5")
    assert no_workers_s() == 7.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("NST_DASK_NO_WORKERS_S", bad)
        with pytest.raises(InputError, match="NST_DASK_NO_WORKERS_S"):
            no_workers_s()


def test_the_runner_pickles_without_its_locks_and_keeps_its_settings():
    runner = ClusterTaskRunner(address="tcp://127.0.0.1:8786")
    assert runner.client_kwargs["timeout"] == 4.0  # a bounded connection, not Dask's 30 s
    copy = pickle.loads(pickle.dumps(runner))
    assert copy.address == runner.address and copy == runner
    copy.submit  # noqa: B018 - still a working runner
    assert copy._lock.acquire(blocking=False) and not copy._stop.is_set()
