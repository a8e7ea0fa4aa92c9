"""Styles by region through the tasks ring and the command line: a manifest's per-pair masks (a
``{stem}`` template), what validate refuses, the sidecar and fingerprint, ``nst stylize --mask``,
and a mask on S3."""

import json

import boto3
import numpy as np
import pytest
from PIL import Image

from nst_batch.cli.main import main
from nst_batch.tasks.pair.pipeline import run_pair
from nst_batch.tasks.pair.records import Status
from nst_batch.tasks.planning.masks import mask_styles_from_text, parse_colour
from nst_batch.tasks.planning.plan import load_plan, plan_with_problems
from nst_batch.tasks.running.preflight import prepare_run
from tests.flows.helpers import save
from tests.s3_server import s3_server
from tests.synthetic import painting_like, photo_like

TINY = "defaults: {size: 32, scales: [1.0], iterations: 6}\n"
RED, BLACK = (255, 0, 0), (0, 0, 0)


def half_mask(path, height=48, width=64, left=RED, right=BLACK, stray: int = 0):
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2 :] = right
    pixels.reshape(-1, 3)[:stray] = (10, 200, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def masked(tmp_path):
    save(photo_like(48, 64), tmp_path / "photos" / "a.png")
    save(painting_like(40, 40), tmp_path / "styles" / "paint.png")
    half_mask(tmp_path / "masks" / "a.png")
    (tmp_path / "m.yaml").write_text(
        TINY + "styles: {paint: styles/paint.png}\npairs:\n"
        "  - {content: photos/*.png, style: paint, mask: 'masks/{stem}.png', "
        "mask_styles: {'#ff0000': paint, '#000': keep}}\n"
    )
    return tmp_path


def test_colours_and_the_command_line_form():
    assert parse_colour("#ff0000") == parse_colour("f00") == (255, 0, 0)
    with pytest.raises(ValueError, match="#rrggbb"):
        parse_colour("red")
    assert mask_styles_from_text("#ff0000=starry, #000=keep") == {"#ff0000": "starry", "#000": "keep"}
    with pytest.raises(ValueError, match="COLOUR=STYLE"):
        mask_styles_from_text("#ff0000")


def test_a_masked_pair_keeps_its_kept_half_and_records_its_mask(masked):
    plan = load_plan(str(masked / "m.yaml"))
    (pair,) = plan.pairs
    assert pair.mask is not None and pair.mask.uri == str(masked / "masks" / "a.png")
    assert prepare_run(plan.source, every_problem=True, inputs=True, settings=True).problems == ()
    assert run_pair(pair, plan.settings).status == Status.PRODUCED
    sidecar = json.loads((masked / "out" / f"{pair.name}.json").read_text())
    assert sidecar["mask"]["uri"] == pair.mask.uri and sidecar["mask"]["styles"] == {"#ff0000": "paint", "#000": "keep"}
    assert "quality" not in sidecar  # the whole-image judge says nothing true of regions
    out = np.asarray(Image.open(masked / "out" / f"{pair.name}.png").convert("RGB")).astype(int)
    photo = np.asarray(
        Image.open(masked / "photos" / "a.png").convert("RGB").resize((32, 24), Image.Resampling.LANCZOS)
    ).astype(int)
    # Output 32x24: the kept right half, but for the feathered edge, is the photo at that size (PNG
    # and the resize round to 1/255; the photo is resized by the stylizer's own resampling).
    assert np.abs(out[:, 19:] - photo[:, 19:]).mean() < 4
    assert np.abs(out[:, :13] - photo[:, :13]).mean() > 8  # the styled half moved
    assert run_pair(pair, plan.settings).status == Status.SKIPPED
    half_mask(masked / "masks" / "a.png", left=BLACK, right=RED)  # another mask: the pair is done again
    assert run_pair(pair, plan.settings).status == Status.PRODUCED


@pytest.mark.parametrize(
    "mask, mapping, message",
    [
        ("none", "{'#ff0000': paint, '#000': keep}", "no such mask"),
        ("square", "{'#ff0000': paint, '#000': keep}", "aspect ratios differ"),
        (
            "stray",
            "{'#ff0000': paint, '#000': keep}",
            "5 pixels (0.2%) have colours mask_styles does not list, e.g. #0ac81e",
        ),
        ("dot", "{'#ff0000': paint, '#000': keep}", "too small to carry a style"),
    ],
)
def test_validate_refuses_bad_masks_in_one_line_each(masked, mask, mapping, message):
    if mask == "square":
        half_mask(masked / "masks" / "a.png", 48, 48)
    elif mask == "stray":
        half_mask(masked / "masks" / "a.png", stray=5)
    elif mask == "dot":
        pixels = np.zeros((48, 64, 3), np.uint8)
        pixels[:2, :2] = RED
        Image.fromarray(pixels).save(masked / "masks" / "a.png")
    elif mask == "none":
        (masked / "masks" / "a.png").unlink()
    plan = load_plan(str(masked / "m.yaml"))
    problems = prepare_run(plan.source, every_problem=True, inputs=True, settings=True).problems
    assert len(problems) == 1 and problems[0].path == "pairs.0.mask" and message in problems[0].message, problems
    row_reason = None
    try:
        run_pair(plan.pairs[0], plan.settings)
    except Exception as exc:  # noqa: BLE001 - the run refuses it too, in one line
        row_reason = str(exc)
    assert row_reason is not None and "\n" not in row_reason


@pytest.mark.parametrize(
    "entry, message",
    [
        ("mask: 'masks/{stem}.png'", "mask and mask_styles go together"),
        ("mask: 'masks/{stem}.png', mask_styles: {'#ff0000': scream}", "'scream' is not one of this pair's styles"),
        ("mask: 'masks/{stem}.png', mask_styles: {'#ff0000': keep}", "every colour keeps the photo"),
        ("mask: 'masks/{stem}.png', mask_styles: {'red': paint}", "is not a colour"),
    ],
)
def test_the_manifest_refuses_inconsistent_mask_styles(masked, entry, message):
    (masked / "m.yaml").write_text(
        TINY + f"styles: {{paint: styles/paint.png}}\npairs:\n  - {{content: photos/*.png, style: paint, {entry}}}\n"
    )
    plan, problems = plan_with_problems(str(masked / "m.yaml"))
    assert any(message in p.message for p in problems), problems


def test_nst_stylize_with_a_mask(masked, capsys):
    out = masked / "o.png"
    meta = masked / "o.json"
    args = [
        "stylize",
        str(masked / "photos" / "a.png"),
        str(masked / "styles" / "paint.png"),
        "-o",
        str(out),
        "--metadata",
        str(meta),
        "--size",
        "32",
        "--scales",
        "1",
        "--iterations",
        "3",
        "--quiet",
        "--mask",
        str(masked / "masks" / "a.png"),
    ]
    assert main([*args, "--mask-styles", "#ff0000=paint,#000000=keep"]) == 0
    assert json.loads(meta.read_text())["mask"]["styles"] == {"#ff0000": "paint", "#000000": "keep"}
    assert main([*args, "--mask-styles", "#ff0000=1,#000000=keep"]) == 0  # a style by its position
    assert main([*args, "--mask-styles", "#ff0000=starry,#000000=keep"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'starry' is not one of this pair's styles" in err and "--mask-styles" in err, err
    assert main([*args[:-2], "--mask-styles", "#ff0000=paint"]) == 2  # no --mask
    assert "--mask and --mask-styles go together" in capsys.readouterr().err  # said in the command line's words
    half_mask(masked / "masks" / "a.png", 48, 48)
    assert main([*args, "--mask-styles", "#ff0000=paint,#000000=keep"]) == 2
    err = capsys.readouterr().err
    assert "aspect ratios differ" in err and "--mask" in err


def test_a_mask_on_s3(tmp_path):
    save(photo_like(48, 64), tmp_path / "a.png")
    save(painting_like(40, 40), tmp_path / "paint.png")
    half_mask(tmp_path / "a-mask.png")
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="mask-art")
        for name in ("a.png", "paint.png", "a-mask.png"):
            s3.upload_file(str(tmp_path / name), "mask-art", f"in/{name}")
        manifest = (
            TINY + "output: s3://mask-art/out\nstyles: {paint: paint.png}\npairs:\n"
            "  - {content: a.png, style: paint, mask: '{stem}-mask.png', mask_styles: {'#f00': paint, '#000': keep}}\n"
        )
        s3.put_object(Bucket="mask-art", Key="in/m.yaml", Body=manifest.encode())
        plan = load_plan("s3://mask-art/in/m.yaml")
        assert plan.pairs[0].mask.uri == "s3://mask-art/in/a-mask.png"
        assert prepare_run(plan.source, every_problem=True, inputs=True, settings=True).problems == ()
        assert run_pair(plan.pairs[0], plan.settings).status == Status.PRODUCED
        sidecar = json.loads(s3.get_object(Bucket="mask-art", Key=f"out/{plan.pairs[0].name}.json")["Body"].read())
        assert sidecar["mask"]["uri"] == "s3://mask-art/in/a-mask.png"
