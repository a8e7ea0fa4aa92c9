"""The records a run writes (nst_batch.tasks.pair.records): each goes to JSON and back unchanged,
and reading anyone's text keeps only well-typed values."""

from __future__ import annotations

import pytest

from nst_batch.tasks.pair.records import CacheUse, Failure, InputRecord, PairRecord, PairRow, RunSummary, Status


def _record(**changes: object) -> PairRecord:
    record = PairRecord(
        name="a__starry",
        output="out/a__starry.png",
        output_bytes=1234,
        output_sha256="ab" * 32,
        content=InputRecord("in/a.jpg", "cd" * 32, [640, 480]),
        styles=[InputRecord("styles/starry.jpg", "ef" * 32, name="starry")],
        format="png",
        style_cache=[CacheUse("styles/starry.jpg", "k1", hit=False, rejected="stale")],
        parameters={"size": 512, "style_blend": [1.0]},
        output_size=[512, 384],
        final_losses={"total": 1.5},
        iterations=210,
        scales=[{"height": 384, "width": 512, "iterations": 210}],
        wall_time_s=12.5,
        quality={"256": {"content": 0.4, "style_gain": 0.3}},
        timings={"decode": 0.1},
        finished_at="2026-12-06T10:00:00+00:00",
        fingerprint="f" * 32,
        batch=4,
        notes=["2 frames: the first is used"],
        sweep={"style_weight": 1000},
        sweep_of="a__starry",
        run_id="run-1",
        manifest="/m.yaml",
        worker="tcp://w:1",
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def test_a_sidecar_goes_to_json_and_back_unchanged():
    record = _record()
    assert PairRecord.from_json(record.to_json()) == record


def test_a_sidecar_leaves_out_what_says_nothing_but_keeps_its_lists_of_styles():
    data = _record(
        batch=1, notes=[], sweep={}, sweep_of="", quality={}, worker=None, run_id="", manifest="", style_cache=[]
    ).to_json()
    assert not {"batch", "notes", "sweep", "sweep_of", "quality", "worker", "run_id", "manifest"} & set(data)
    assert data["style_cache"] == [] and data["styles"][0] == {
        "name": "starry",
        "uri": "styles/starry.jpg",
        "sha256": "ef" * 32,
    }
    assert data["style_cache"] == [] and "rejected" not in str(
        _record(style_cache=[CacheUse("s", "k", True)]).to_json()["style_cache"]
    )


def test_reading_a_sidecar_keeps_only_well_typed_values():
    data = _record().to_json()
    data.update(iterations="many", wall_time_s=True, output_size="512x384", quality=[1, 2], worker=7)
    record = PairRecord.from_json(data)
    assert record is not None
    assert (record.iterations, record.wall_time_s, record.output_size, record.quality, record.worker) == (
        None,
        None,
        [],
        {},
        None,
    )
    assert record.name == "a__starry" and record.final_losses == {"total": 1.5}


@pytest.mark.parametrize(
    "data", [None, [], {"name": 3, "styles": []}, {"name": "x"}, {"output": "x.png", "styles": []}]
)
def test_a_file_that_is_no_sidecar_of_ours_reads_as_none(data):
    assert PairRecord.from_json(data) is None


@pytest.mark.parametrize("broken", [{"content": "a.jpg"}, {"styles": "starry"}, {"styles": [{"uri": "s.jpg"}]}])
def test_a_sidecar_whose_inputs_cannot_be_read_is_refused(broken):
    with pytest.raises(ValueError, match="a__starry"):
        PairRecord.from_json({**_record().to_json(), **broken})


def test_the_blend_is_read_only_when_it_gives_one_weight_a_style():
    assert _record().blend() == [1.0]
    assert _record(parameters={"style_blend": [1.0, 3.0]}).blend() is None  # two weights, one style
    two = _record(
        styles=[InputRecord("a", "", name="a"), InputRecord("b", "", name="b")], parameters={"style_blend": [1.0, 3.0]}
    )
    assert two.blend() == [0.25, 0.75]


def _summary() -> RunSummary:
    rows = [
        PairRow(
            "a__starry",
            "in/a.jpg",
            ["styles/starry.jpg"],
            ["starry"],
            [1.0],
            "out/a__starry.png",
            "out/a__starry.json",
            Status.PRODUCED,
            iterations=210,
            wall_time_s=12.5,
            final_losses={"total": 1.5},
        ),
        PairRow(
            "b__starry",
            "in/b.jpg",
            ["styles/starry.jpg"],
            ["starry"],
            [1.0],
            "out/b__starry.png",
            "out/b__starry.json",
            Status.FAILED,
            reason="not an image file",
        ),
    ]
    return RunSummary(
        manifest="/m.yaml",
        output="out",
        run_id="run-1",
        started_at="2026-12-06T10:00:00+00:00",
        finished_at="2026-12-06T10:01:00+00:00",
        counts={"planned": 2, "produced": 1, "skipped": 0, "failed": 1},
        style_targets={"computed": 1, "from_cache": 0},
        failures=[Failure("b__starry", "in/b.jpg", ["styles/starry.jpg"], "not an image file")],
        pairs=rows,
        wall_time_s=60.0,
        warnings=["the gallery was not built: disk full"],
        live_view_s=0.5,
    )


def test_a_summary_goes_to_json_and_back_unchanged():
    summary = _summary()
    data = summary.to_json()
    assert data["done_earlier"] == 0 and list(data)[0] == "manifest"  # what the ownership check recognises as ours
    assert RunSummary.from_json(data) == summary


def test_a_summary_read_back_keeps_only_well_typed_values_and_refuses_what_is_no_summary():
    data = _summary().to_json()
    data.update(
        failures=[{"name": 5}, "x"],
        pairs=[{"name": "c", "status": "exploded"}, {"status": "failed"}],
        wall_time_s="long",
    )
    summary = RunSummary.from_json(data)
    assert summary.failures == [Failure("", "", [], "")] and summary.wall_time_s == 0.0
    assert [(r.name, r.status) for r in summary.pairs] == [
        ("c", Status.FAILED)
    ]  # a status we do not know reads as failed
    for no_summary in ({"pairs": []}, [], None, {"counts": 3}):
        with pytest.raises(ValueError):
            RunSummary.from_json(no_summary)
