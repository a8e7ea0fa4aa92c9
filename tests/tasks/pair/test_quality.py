"""Every output's quality, measured by the one judge (nst_batch.core.quality): recorded in its
sidecar and row, spread per style in the summary, shown in the gallery."""

import json

import pytest
import torch

from nst_batch.core.quality import Evaluator, judge
from nst_batch.core.vgg import VGGFeatures
from nst_batch.core.weights import load_caffe_weights
from nst_batch.tasks.pair.pipeline import run_pair
from nst_batch.tasks.pair.records import Status
from nst_batch.tasks.planning.plan import load_plan
from nst_batch.tasks.presenting.gallery import build_gallery
from nst_batch.tasks.running.summary import quality_spread
from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like


@pytest.fixture(scope="module")
def features():
    return VGGFeatures(load_caffe_weights(), "relu5_1", "max").eval()


def test_the_judge_gives_the_photo_a_style_gain_of_one_and_the_painting_less(features):
    photo, painting = photo_like(48, 64), painting_like(48, 64)
    evaluator = Evaluator(features, photo, painting)
    assert judge(evaluator, photo) == {"64": {"content": 0.0, "style_gain": 1.0, "swd_gain": 1.0}}
    figures = judge(evaluator, painting)["64"]
    assert figures["content"] > 0.3 and figures["style_gain"] < 0.5
    assert figures["swd_gain"] < 0.05  # the painting's own distribution, but for sampling: its quantiles are its own
    # A blend's target is its weighted Gram matrices: all of one painting is that painting's.
    assert Evaluator(features, photo, [painting, photo], [1.0, 0.0])(painting).style == pytest.approx(
        evaluator(painting).style, abs=1e-6
    )


def test_each_output_records_its_quality_and_the_summary_spreads_it(tmp_path):
    save(photo_like(48, 64), tmp_path / "photos" / "a.png")
    save(photo_like(48, 64, seed=5).flip(-1), tmp_path / "photos" / "b.png")
    save(painting_like(40, 40), tmp_path / "styles" / "paint.png")
    (tmp_path / "m.yaml").write_text(
        "defaults: {size: 32, scales: [1.0], iterations: 8}\nstyles: {paint: styles/paint.png}\ncontents: [photos/]\n"
    )
    plan = load_plan(str(tmp_path / "m.yaml"))
    rows = [run_pair(p, plan.settings) for p in plan.pairs]
    sidecar = json.loads((tmp_path / "out" / "a__paint.json").read_text())
    assert set(sidecar["quality"]) == {"32"} and 0 < sidecar["quality"]["32"]["content"] < 2
    assert 0 < sidecar["quality"]["32"]["style_gain"] < 1  # the stylized output has more of the painting than the photo
    assert "quality" in sidecar["timings"] and rows[0].quality == sidecar["quality"]
    spread = quality_spread(rows)
    assert (
        spread["paint"]["pairs"] == 2 and spread["paint"]["style_gain"]["min"] <= spread["paint"]["style_gain"]["max"]
    )
    assert 0 < sidecar["quality"]["32"]["swd_gain"] < 1 and set(spread["paint"]["swd_gain"]) == {"min", "median", "max"}
    again = [run_pair(p, plan.settings) for p in plan.pairs]  # skipped: their quality comes from the sidecars
    assert [r.status for r in again] == [Status.SKIPPED] * 2 and quality_spread(again) == spread
    build_gallery(str(tmp_path / "out"))
    page = (tmp_path / "out" / "index.html").read_text()
    figures = sidecar["quality"]["32"]
    assert f'data-style-gain="{figures["style_gain"]:.4f}"' in page
    assert f"content {figures['content']:.2f} · style {figures['style_gain']:.2f}" in page


def test_a_larger_output_is_also_judged_at_gallery_scale(features):
    photo, painting = photo_like(300, 400), painting_like(200, 200)
    figures = judge(Evaluator(features, photo, painting), photo.flip(-1))
    assert set(figures) == {"400", "256"} and figures["256"]["style_gain"] > 0
    assert torch.equal(photo, photo_like(300, 400))  # the judge does not touch its inputs
