"""The stylize-batch flow under Prefect's test harness (a real temporary Prefect server)."""

import json

import pytest

from nst_batch.flows.stylize_batch import stylize_batch
from nst_batch.tasks.running.runners import make_task_runner
from tests.flows.helpers import make_batch


def _run(manifest, **kw):
    return stylize_batch(manifest=str(manifest), return_state=True, **kw)


def test_batch_isolates_failures_then_reruns_idempotently(prefect_server, tmp_path):
    manifest = make_batch(tmp_path, corrupt=True)
    state = _run(manifest)
    assert state.is_failed()
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"planned": 6, "produced": 4, "skipped": 0, "failed": 2}
    assert summary["style_targets"] == {"computed": 2, "from_cache": 0}  # one computation per style
    assert {f["name"] for f in summary["failures"]} == {"broken__stripes", "broken__waves"}
    assert all("broken.png" in f["content"] and f["reason"] for f in summary["failures"])
    for name in ("a__stripes", "a__waves", "b__stripes", "b__waves"):
        assert (out / f"{name}.png").exists() and json.loads((out / f"{name}.json").read_text())["name"] == name
    assert not list(out.glob("broken*")) and not list(out.rglob("*.part"))
    gallery = (out / "index.html").read_text()
    assert (
        gallery.count('<td class="produced"') == 4
        and gallery.count('<td class="failed"') == 2
        and 'href="a__waves.png"' in gallery
    )
    assert gallery.count("<dt>scales</dt><dd>32 px 2 its</dd>") == 4  # what each scale ran, not the parameter

    (tmp_path / "photos" / "broken.png").unlink()
    again = _run(manifest)
    assert again.is_completed()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"planned": 4, "produced": 0, "skipped": 4, "failed": 0}
    assert summary["style_targets"] == {"computed": 0, "from_cache": 2}

    forced = _run(manifest, force=True)
    assert forced.is_completed()
    assert json.loads((out / "summary.json").read_text())["counts"]["produced"] == 4


def test_output_override(prefect_server, tmp_path):
    manifest = make_batch(tmp_path)
    state = _run(manifest, output=str(tmp_path / "elsewhere"))
    assert state.is_completed()
    assert (tmp_path / "elsewhere" / "a__stripes.png").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dask_runner_on_a_local_two_process_cluster(prefect_server, tmp_path):
    manifest = make_batch(tmp_path)
    flow = stylize_batch.with_options(task_runner=make_task_runner("dask", workers=2))
    state = flow(manifest=str(manifest), return_state=True)
    assert state.is_completed(), state.message
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["produced"] == 4 and summary["style_targets"]["computed"] == 2


def _artifacts(state) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    this_run = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
    )  # the server is shared
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=this_run)


def test_a_run_shows_its_pairs_live_in_prefect_artifacts_and_leaves_no_live_files(
    prefect_server, tmp_path, monkeypatch
):
    import nst_batch.tasks.running.prefect_tasks

    monkeypatch.setattr(
        nst_batch.tasks.running.prefect_tasks, "LIVE_AFTER_S", 0.0
    )  # these pairs take a second: watch them from their start
    manifest = make_batch(tmp_path)
    state = _run(manifest)
    assert state.is_completed()
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["live_view_s"] < summary["wall_time_s"] and all("live_s" in r for r in summary["pairs"])
    assert not [p for p in (out / "live").rglob("*") if p.is_file()]  # every pair cleaned up after itself
    assert "refresh" not in (out / "index.html").read_text()  # the final gallery does not reload
    artifacts = _artifacts(state)
    live = [a for a in artifacts if a.key and a.key.startswith("live-")]
    progress = [a for a in artifacts if a.type == "progress" and str(a.description or "").startswith("stylize-pairs:")]
    assert live and all("data:image/jpeg;base64," in str(a.data) for a in live)
    assert {a.key for a in live} == {
        f"live-{state.state_details.flow_run_id}"
    }  # one collection for the run, not one per chunk
    assert progress and all(float(a.data) == 100.0 for a in progress)  # every chunk's progress ends full


def test_pairs_too_short_to_watch_make_no_artifacts_of_their_own(prefect_server, tmp_path):
    """Each artifact created or updated is an event that `prefect deployment run --watch` prints:
    pairs that end within LIVE_AFTER_S show only in the run's progress artifact, updated at its end."""
    state = _run(make_batch(tmp_path))
    assert state.is_completed()
    artifacts = _artifacts(state)
    assert sorted(a.type for a in artifacts) == ["progress", "table"], [
        (a.type, a.key, a.description) for a in artifacts
    ]
    progress = next(a for a in artifacts if a.type == "progress")
    assert float(progress.data) == 100.0 and progress.description == "4 of 4 pairs finished"


def test_the_sidecar_and_the_summary_agree_on_what_a_cache_hit_is(prefect_server, tmp_path):
    """A hit is targets an earlier run made: in a fresh run every pair reads targets its own style
    task computed (the sidecar said hit: true, the summary computed: 1); in a re-run they are hits."""
    manifest = make_batch(tmp_path)
    out = tmp_path / "out"
    assert _run(manifest).is_completed()
    assert not (out / "live").exists()  # a normal run leaves no live files, and no empty live/ folder
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["pairs"]}
    for name, row in rows.items():
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert [c["hit"] for c in sidecar["style_cache"]] == [False]
        assert (row["targets_computed"], row["targets_cached"]) == (1, 0)
    for suffix in ("png", "json"):
        (out / f"a__stripes.{suffix}").unlink()
    assert _run(manifest).is_completed()
    summary = json.loads((out / "summary.json").read_text())
    row = next(r for r in summary["pairs"] if r["name"] == "a__stripes")
    assert row["status"] == "produced" and (row["targets_computed"], row["targets_cached"]) == (0, 1)
    assert [c["hit"] for c in json.loads((out / "a__stripes.json").read_text())["style_cache"]] == [True]
    assert summary["style_targets"] == {"computed": 0, "from_cache": 2}


def test_the_flow_for_a_checked_plan_is_the_same_flow_and_runs_only_its_plan(tmp_path):
    """nst run's flow (its plan in a closure) has the deployment's name, parameters and
    description; called for another manifest it refuses rather than run the wrong plan."""
    import inspect

    from nst_batch.flows.stylize_batch import stylize_checked
    from nst_batch.tasks.running.preflight import prepare_run

    manifest = make_batch(tmp_path)
    checked = stylize_checked(prepare_run(str(manifest)))
    assert checked.name == stylize_batch.name == "stylize-batch"
    assert inspect.signature(checked.fn) == inspect.signature(stylize_batch.fn)
    assert checked.description == stylize_batch.description and checked.description
    with pytest.raises(ValueError, match="runs the plan of"):
        checked.fn(manifest=str(tmp_path / "other.yaml"))
