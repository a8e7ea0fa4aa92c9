"""``style_loss: swd`` through the tasks ring: a manifest's parameter (and a sweep of it), the style
target cache (its own entries, hit on a re-run), the sidecar, the gallery, and S3."""

import json

import boto3

from nst_batch.tasks.pair.pipeline import run_pair
from nst_batch.tasks.pair.records import Status
from nst_batch.tasks.pair.target_cache import ensure_style_targets
from nst_batch.tasks.planning.plan import load_plan
from nst_batch.tasks.presenting.gallery import build_gallery
from tests.flows.helpers import save
from tests.s3_server import s3_server
from tests.synthetic import painting_like, photo_like

TINY = "defaults: {size: 32, scales: [1.0], iterations: 3}\n"


def test_a_sweep_of_both_losses_keeps_their_targets_apart_and_reuses_them(tmp_path):
    save(photo_like(48, 64), tmp_path / "photos" / "a.png")
    save(painting_like(40, 40), tmp_path / "styles" / "paint.png")
    (tmp_path / "m.yaml").write_text(
        TINY + "styles: {paint: {path: styles/paint.png, sweep: {style_loss: [gram, swd]}}}\ncontents: [photos/]\n"
    )
    plan = load_plan(str(tmp_path / "m.yaml"))
    assert [(p.name, p.config.style_loss) for p in plan.pairs] == [
        ("a__paint__style_loss-gram", "gram"),
        ("a__paint__style_loss-swd", "swd"),
    ]
    rows = [run_pair(p, plan.settings) for p in plan.pairs]
    assert [r.status for r in rows] == [Status.PRODUCED] * 2
    gram, swd = (json.loads((tmp_path / "out" / f"{p.name}.json").read_text()) for p in plan.pairs)
    assert (gram["parameters"]["style_loss"], swd["parameters"]["style_loss"]) == ("gram", "swd")
    assert len(list((tmp_path / "out" / ".cache" / "style-targets").iterdir())) == 2  # one entry per loss
    assert gram["style_cache"][0]["key"] != swd["style_cache"][0]["key"]
    # A re-run of the swd pair's targets (a new seed aside) is a cache hit.
    assert ensure_style_targets(plan.pairs[1].styles[0].uri, plan.pairs[1].config, plan.settings).hit is True
    assert 0 < swd["quality"]["32"]["swd_gain"] < 1.5
    again = [run_pair(p, plan.settings) for p in plan.pairs]
    assert [r.status for r in again] == [Status.SKIPPED] * 2
    build_gallery(str(tmp_path / "out"))
    page = (tmp_path / "out" / "index.html").read_text()
    assert "style_loss" in page and "swd" in page


def test_another_seed_draws_other_directions_and_computes_its_own_targets(tmp_path):
    save(painting_like(40, 40), tmp_path / "styles" / "paint.png")
    save(photo_like(48, 64), tmp_path / "a.png")
    (tmp_path / "m.yaml").write_text(
        TINY + "styles: {paint: styles/paint.png}\ncontents: [a.png]\n"
        "pairs:\n  - {content: a.png, style: paint, style_loss: swd}\n"
        "  - {content: a.png, style: paint, style_loss: swd, seed: 7, name: seven}\n"
    )
    first, seven = load_plan(str(tmp_path / "m.yaml")).pairs
    settings = load_plan(str(tmp_path / "m.yaml")).settings
    a = ensure_style_targets(first.styles[0].uri, first.config, settings)
    b = ensure_style_targets(seven.styles[0].uri, seven.config, settings)
    assert a.key != b.key and not b.hit


def test_swd_on_s3_writes_and_rereads_its_cache_there(tmp_path):
    save(photo_like(48, 64), tmp_path / "a.png")
    save(painting_like(40, 40), tmp_path / "paint.png")
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="swd-art")
        s3.upload_file(str(tmp_path / "a.png"), "swd-art", "in/a.png")
        s3.upload_file(str(tmp_path / "paint.png"), "swd-art", "in/paint.png")
        manifest = (
            TINY.replace("iterations: 3", "iterations: 3, style_loss: swd")
            + "output: s3://swd-art/out\nstyles: {paint: paint.png}\ncontents: [a.png]\n"
        )
        s3.put_object(Bucket="swd-art", Key="in/m.yaml", Body=manifest.encode())
        plan = load_plan("s3://swd-art/in/m.yaml")
        assert plan.pairs[0].config.style_loss == "swd"
        assert run_pair(plan.pairs[0], plan.settings).status == Status.PRODUCED
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="swd-art", Prefix="out/")["Contents"]}
        assert {"out/a__paint.png", "out/a__paint.json"} <= keys
        assert sum(k.startswith("out/.cache/style-targets/") for k in keys) == 1
        sidecar = json.loads(s3.get_object(Bucket="swd-art", Key="out/a__paint.json")["Body"].read())
        assert sidecar["parameters"]["style_loss"] == "swd"
        assert ensure_style_targets(plan.pairs[0].styles[0].uri, plan.pairs[0].config, plan.settings).hit is True
