"""The live view without a server: a pair's live files, paced and removed at its end; a view that
cannot be written never fails the pair; the gallery of a run in progress."""

import json
from dataclasses import replace
from pathlib import Path

import torch

from nst_batch.core import StepInfo
from nst_batch.tasks.output.layout import live_image, live_state
from nst_batch.tasks.pair.done import failed_row
from nst_batch.tasks.planning.plan import load_plan
from nst_batch.tasks.presenting.gallery import build_live_gallery
from nst_batch.tasks.presenting.live import LiveGallery, LivePair
from tests.flows.helpers import make_batch


def _step(progress: float = 0.5, image: bool = True, done: bool = False) -> StepInfo:
    return StepInfo(
        0,
        1,
        24,
        32,
        7,
        10,
        1.0,
        {"total": 3.0},
        done,
        False,
        torch.rand(1, 3, 24, 32) if image else None,
        work_done=progress,
        work_left=1 - progress,
    )


def test_a_running_pair_publishes_its_image_and_progress_at_a_pace_and_cleans_up(tmp_path):
    plan = load_plan(str(make_batch(tmp_path)))
    root = Path(plan.settings.output_root)
    live = LivePair("a__stripes", plan.settings, every_s=60)
    live(_step(0.25))
    state = json.loads((root / live_state("a__stripes")).read_text())
    assert (
        state["status"] == "running"
        and state["progress"] == 0.25
        and state["iteration"] == 7
        and state["size"] == [32, 24]
    )
    assert (root / live_image("a__stripes")).read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    live(_step(0.5))  # within the pace: nothing written
    assert json.loads((root / live_state("a__stripes")).read_text())["progress"] == 0.25
    live(_step(0.75, done=True))  # the end of a scale is always shown
    assert json.loads((root / live_state("a__stripes")).read_text())["progress"] == 0.75
    live(_step(0.9, image=False))  # no image at this step (not a report point): nothing to show
    live.finish()
    assert not (root / live_state("a__stripes")).exists() and not (root / live_image("a__stripes")).exists()
    assert live.seconds > 0


def test_a_view_that_cannot_be_written_never_fails_the_pair(tmp_path, caplog):
    plan = load_plan(str(make_batch(tmp_path)))
    (tmp_path / "out").write_text("a file where the output folder should be")
    live = LivePair("a__stripes", plan.settings, every_s=0)
    live(_step())
    live(_step())
    live.finish()
    assert live.broken and caplog.text.count("the pair goes on without it") == 1


def test_the_gallery_of_a_run_in_progress_marks_pending_running_and_finished_pairs(tmp_path):
    from nst_batch.tasks.pair.done import failed_row
    from nst_batch.tasks.pair.pipeline import run_pair

    plan = load_plan(str(make_batch(tmp_path)))
    done = run_pair(plan.pairs[0], plan.settings)
    failed = failed_row(plan.pairs[1], plan.settings, "not an image file")
    LivePair(plan.pairs[2].name, plan.settings)(_step(0.4))
    build_live_gallery(plan, {done.name: done, failed.name: failed}, reload_s=5)
    page = (tmp_path / "out" / "index.html").read_text()
    assert '<meta http-equiv="refresh" content="5">' in page and "This run is in progress" in page
    assert f'<td class="produced" data-pair="{plan.pairs[0].name}" data-content="' in page  # with its measured quality
    assert f'<td class="failed" data-pair="{plan.pairs[1].name}">' in page
    assert (
        f'<td class="running" data-pair="{plan.pairs[2].name}" data-progress="0.4">' in page
        and "running · 40 %" in page
    )
    assert f'src="{live_image(plan.pairs[2].name)}?v=' in page
    assert f'<td class="pending" data-pair="{plan.pairs[3].name}">' in page
    assert "1 image and 1 failed and 1 running and 1 pending" in page


def test_the_live_gallery_paces_itself_and_a_broken_one_never_stops_the_run(tmp_path, monkeypatch):
    plan = load_plan(str(make_batch(tmp_path)))
    with LiveGallery(plan, min_wait_s=0.01) as live:
        live.add([failed_row(plan.pairs[0], plan.settings, "x")])
    assert live.renders >= 1 and "refresh" in (tmp_path / "out" / "index.html").read_text()
    broken = LiveGallery(replace(plan, settings=replace(plan.settings, output_root=str(tmp_path / "m.yaml" / "sub"))))
    broken.render_once()
    broken.render_once()
    assert broken.renders == 0 and broken.seconds >= 0  # failed twice, quietly
