"""The batch work without Prefect: style-target cache keys, skip-if-unchanged, failures."""

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from nst_batch.tasks.errors import PairFailed
from nst_batch.tasks.pair.pipeline import run_pair
from nst_batch.tasks.pair.target_cache import ensure_style_targets, targets_cache_key
from nst_batch.tasks.planning.plan import load_plan
from tests.synthetic import painting_like, photo_like

TINY = "defaults: {size: 32, scales: [1.0], iterations: 2}\n"


def save(tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
    return path


@pytest.fixture
def batch(tmp_path):
    save(photo_like(48, 64), tmp_path / "photos" / "a.png")
    save(photo_like(48, 64, seed=5).flip(-1), tmp_path / "photos" / "b.png")
    save(painting_like(40, 40), tmp_path / "styles" / "paint.png")
    (tmp_path / "m.yaml").write_text(TINY + "styles: {paint: styles/paint.png}\ncontents: [photos/*.png]\n")
    return tmp_path


def test_targets_are_computed_once_then_read_from_the_cache(batch):
    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    first = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings)
    second = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings)
    assert (first.hit, second.hit) == (False, True) and first.key == second.key
    assert len(list((batch / "out" / ".cache" / "style-targets").iterdir())) == 1
    forced = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings, force=True)
    assert forced.hit is False


def test_changed_style_bytes_change_the_key_and_recompute(batch):
    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    first = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings)
    save(painting_like(40, 40).flip(-2), batch / "styles" / "paint.png")
    changed = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings)
    assert changed.key != first.key and changed.hit is False


def test_cache_key_depends_on_what_shapes_the_targets():
    from nst_batch.core.targets import TargetSpec

    spec = TargetSpec("caffe:caffe:sha256=x", "max", ("relu1_1",), "fp32", "rgb", None)
    base = targets_cache_key("abc", spec, (32,))
    assert targets_cache_key("abc", spec, (32,)) == base
    assert targets_cache_key("abd", spec, (32,)) != base
    assert targets_cache_key("abc", spec, (64,)) != base
    assert (
        targets_cache_key("abc", TargetSpec("caffe:caffe:sha256=x", "avg", ("relu1_1",), "fp32", "rgb", None), (32,))
        != base
    )


def test_corrupt_cache_entry_is_recomputed(batch):
    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    key = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings).key
    entry = batch / "out" / ".cache" / "style-targets" / f"{key}.pt"
    entry.write_bytes(entry.read_bytes()[:100])
    again = ensure_style_targets(pair.styles[0].uri, pair.config, plan.settings)
    assert again.hit is False and len(entry.read_bytes()) > 100


def test_pair_is_produced_then_skipped_then_redone_when_inputs_change(batch):
    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    row = run_pair(pair, plan.settings)
    assert row.status == "produced" and len(row.computed_keys) == 1 == len(row.target_keys)
    out, sidecar = Path(row.output), json.loads(Path(row.sidecar).read_text())
    assert Image.open(out).size == (32, 24)
    assert sidecar["style_cache"][0]["hit"] is False and sidecar["parameters"]["size"] == 32
    assert sidecar["parameters"]["precision"] in ("fp32", "bf16")  # settled for the device, not "auto"
    assert sidecar["content"]["sha256"] and sidecar["weights"]["source"] == "caffe"
    assert set(sidecar["timings"]) == {"decode", "setup", "stylize", "quality", "write"} and all(
        t >= 0 for t in sidecar["timings"].values()
    )
    assert (batch / "out" / "thumbs" / "a__paint.jpg").exists()
    assert run_pair(pair, plan.settings).status == "skipped"
    assert run_pair(pair, plan.settings, force=True).status == "produced"
    save(photo_like(48, 64, seed=9), batch / "photos" / "a.png")  # same path, new bytes
    assert run_pair(pair, plan.settings).status == "produced"
    changed_params = load_plan(str(batch / "m.yaml")).pairs[0]
    object.__setattr__(changed_params, "config", dataclasses.replace(changed_params.config, style_weight=50.0))
    assert run_pair(changed_params, plan.settings).status == "produced"


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.unlink(), "no such file"),
        (lambda p: p.write_bytes(b"not an image"), "not an image"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "truncated or corrupt"),
    ],
)
def test_bad_content_fails_that_pair_with_a_reason_and_leaves_nothing(batch, damage, reason):
    plan = load_plan(str(batch / "m.yaml"))
    damage(batch / "photos" / "a.png")
    with pytest.raises(PairFailed, match=reason):
        run_pair(plan.pairs[0], plan.settings)
    assert not (batch / "out" / "a__paint.png").exists() and not (batch / "out" / "a__paint.json").exists()
    assert run_pair(plan.pairs[1], plan.settings).status == "produced"


def test_nan_loss_fails_the_pair_clearly(batch):
    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    object.__setattr__(pair, "config", dataclasses.replace(pair.config, style_weight=1e38))
    with pytest.raises(PairFailed, match="loss became (nan|inf)"):
        run_pair(pair, plan.settings)


def test_preserve_color_targets_are_made_per_content(batch):
    (batch / "m.yaml").write_text(
        TINY + "styles: {paint: {path: styles/paint.png, preserve_color: true}}\ncontents: [photos/*.png]\n"
    )
    plan = load_plan(str(batch / "m.yaml"))
    rows = [run_pair(p, plan.settings) for p in plan.pairs]
    assert [len(r.computed_keys) for r in rows] == [1, 1]
    assert len(list((batch / "out" / ".cache" / "style-targets").iterdir())) == 2
    assert plan.pairs[0].config.preserve_color


def test_a_pair_too_large_for_the_memory_budget_fails_alone(batch, monkeypatch):
    plan = load_plan(str(batch / "m.yaml"))
    big = plan.pairs[0]
    object.__setattr__(big, "config", dataclasses.replace(big.config, size=4000))
    monkeypatch.setenv("NST_MAX_MEMORY", "4G")
    with pytest.raises(
        PairFailed,
        match=r"4000x3000 px output needs about .* but 4.0 GiB is available \(NST_MAX_MEMORY=4G\); use size \d+",
    ):
        run_pair(big, plan.settings)
    assert not (batch / "out" / f"{big.name}.png").exists()
    assert run_pair(plan.pairs[1], plan.settings).status == "produced"


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "bytes, its sidecar says"),
        (lambda p: p.unlink(), None),
        (lambda p: p.write_bytes(b"\0" * len(p.read_bytes())), "does not decode"),
    ],
)
def test_a_damaged_output_under_an_intact_sidecar_is_produced_again(batch, damage, why):
    """Truncated, missing or undecodable: a re-run redoes the pair (it was skipped for ever) and says why."""
    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    row = run_pair(pair, plan.settings)
    out = Path(row.output)
    sidecar = json.loads(Path(row.sidecar).read_text())
    assert sidecar["output_bytes"] == out.stat().st_size
    assert sidecar["output_sha256"] == __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    damage(out)
    again = run_pair(pair, plan.settings)
    assert again.status == "produced"
    assert (why in again.redone) if why else not again.redone
    assert Image.open(out).size == (32, 24)
    assert run_pair(pair, plan.settings).status == "skipped"


def test_same_size_damage_is_found_by_verify_only(batch):
    from dataclasses import replace

    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    out = Path(run_pair(pair, plan.settings).output)
    data = bytearray(out.read_bytes())
    data[-20] ^= 0xFF  # a flipped bit inside the image data: same size, same header
    out.write_bytes(bytes(data))
    assert run_pair(pair, plan.settings).status == "skipped"  # the default check: size and header
    verified = run_pair(pair, replace(plan.settings, verify=True))
    assert verified.status == "produced" and "sha256" in verified.redone


def test_swapped_cache_entries_are_refused_and_recomputed(batch):
    """Two styles' entries swapped on disk: each pair gets its own painting's targets, and the
    sidecar says the entry was rejected, not that it was a hit."""
    save(painting_like(40, 40).flip(-1).roll(7, -1), batch / "styles" / "other.png")
    (batch / "m.yaml").write_text(
        TINY + "styles: {paint: styles/paint.png, other: styles/other.png}\ncontents: [photos/a.png]\n"
    )
    plan = load_plan(str(batch / "m.yaml"))
    first, second = plan.pairs
    keys = [ensure_style_targets(p.styles[0].uri, p.config, plan.settings).key for p in (first, second)]
    cache = batch / "out" / ".cache" / "style-targets"
    a, b = cache / f"{keys[0]}.pt", cache / f"{keys[1]}.pt"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    again = ensure_style_targets(first.styles[0].uri, first.config, plan.settings)
    assert again.hit is False and "is for key" in again.rejected
    row = run_pair(second, plan.settings)
    entry = json.loads(Path(row.sidecar).read_text())["style_cache"][0]
    assert entry["hit"] is False and "is for key" in entry["rejected"]
    assert ensure_style_targets(second.styles[0].uri, second.config, plan.settings).hit is True  # rewritten right


@pytest.mark.parametrize("keep", [False, True])
def test_a_parameter_change_keeps_the_earlier_image_only_when_asked(batch, keep):
    manifest = batch / "m.yaml"
    manifest.write_text(manifest.read_text() + ("keep_earlier: true\n" if keep else ""))
    plan = load_plan(str(manifest))
    first = run_pair(plan.pairs[0], plan.settings)
    out = batch / "out"
    before = (out / f"{first.name}.png").read_bytes()
    made_at = json.loads((out / f"{first.name}.json").read_text())["finished_at"]
    manifest.write_text(manifest.read_text().replace("iterations: 2", "iterations: 3"))
    plan = load_plan(str(manifest))
    assert run_pair(plan.pairs[0], plan.settings).status == "produced"
    assert (out / f"{first.name}.png").read_bytes() != before  # the latest is under the pair's name
    kept = sorted(p.name for p in (out / "earlier").iterdir()) if (out / "earlier").exists() else []
    if not keep:
        assert kept == []
        return
    stamp = made_at.replace("-", "").replace(":", "").replace("+00:00", "Z")
    assert kept == [f"{first.name}.{stamp}.json", f"{first.name}.{stamp}.png"]
    assert (out / "earlier" / f"{first.name}.{stamp}.png").read_bytes() == before
    assert json.loads((out / "earlier" / f"{first.name}.{stamp}.json").read_text())["parameters"]["iterations"] == [2]
    assert run_pair(plan.pairs[0], plan.settings).status == "skipped"  # unchanged: nothing more is kept
    assert len(list((out / "earlier").iterdir())) == 2


def test_quality_redoes_lossy_outputs_only(batch):
    """PNG is lossless: a new `quality` redoes no PNG output; a JPEG output it does redo."""
    from nst_batch.tasks.pair.records import Status

    plan = load_plan(str(batch / "m.yaml"))
    pair = plan.pairs[0]
    assert run_pair(pair, plan.settings).status == Status.PRODUCED
    assert (
        run_pair(
            pair, dataclasses.replace(plan.settings, runtime=dataclasses.replace(plan.settings.runtime, quality=60))
        ).status
        == Status.SKIPPED
    )
    jpeg = dataclasses.replace(plan.settings, format="jpg")
    assert run_pair(pair, jpeg).status == Status.PRODUCED
    assert (
        run_pair(pair, dataclasses.replace(jpeg, runtime=dataclasses.replace(jpeg.runtime, quality=60))).status
        == Status.PRODUCED
    )


def test_what_an_input_loses_is_a_note_in_the_sidecar_and_the_row(batch):
    """A transparent photo into JPEG outputs, an animated GIF: said, not done in silence."""
    image = Image.open(batch / "photos" / "a.png").convert("RGBA")
    image.putalpha(128)
    image.save(batch / "photos" / "a.png")
    frames = [Image.open(batch / "photos" / "b.png").convert("RGB"), Image.new("RGB", (64, 48), (0, 0, 0))]
    frames[0].save(batch / "photos" / "c.gif", save_all=True, append_images=frames[1:])
    (batch / "m.yaml").write_text(TINY + "format: jpg\nstyles: {paint: styles/paint.png}\ncontents: [photos/]\n")
    plan = load_plan(str(batch / "m.yaml"))
    rows = {p.name: run_pair(p, plan.settings) for p in plan.pairs}
    assert rows["a__paint"].notes == [
        "its transparency is flattened onto white: jpg holds no alpha (format png or webp keeps it)"
    ]
    assert rows["c__paint"].notes == ["2 frames: the first is used"] and rows["b__paint"].notes == []
    sidecar = json.loads((batch / "out" / "c__paint.json").read_text())
    assert sidecar["notes"] == ["2 frames: the first is used"] and sidecar["manifest"] == str(batch / "m.yaml")
    assert (
        rows["c__paint"].to_json()["notes"] == ["2 frames: the first is used"]
        and "notes" not in rows["b__paint"].to_json()
    )
