"""`nst stylize` end to end on tiny synthetic images: outputs, metadata, and every bad input."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from nst_batch.cli.main import main
from nst_batch.core.device import resolve_precision
from nst_batch.core.weights import CAFFE_WEIGHTS_SHA256
from tests.cli.helpers import stylize
from tests.flows.helpers import save
from tests.synthetic import photo_like

FAST = ["--size", "32", "--scales", "1", "--iterations", "2", "--quiet"]


@pytest.mark.parametrize("ext, fmt", [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_writes_the_format_of_the_extension(images, tmp_path, ext, fmt):
    out = tmp_path / "out" / f"result.{ext}"
    assert stylize(images, str(out), *FAST) == 0
    with Image.open(out) as image:
        assert image.format == fmt and image.size == (32, 24)
    assert [p.name for p in out.parent.iterdir()] == [f"result.{ext}"]  # no temporary files left


def test_metadata_records_everything(images, tmp_path):
    out, meta_path = tmp_path / "o.png", tmp_path / "o.json"
    assert (
        main(
            [
                "stylize",
                str(images[0]),
                str(images[1]),
                str(images[1]),
                "-o",
                str(out),
                "--metadata",
                str(meta_path),
                "--style-blend",
                "3,1",
                "--seed",
                "4",
                "--threads",
                "1",
                *FAST,
            ]
        )
        == 0
    )
    meta = json.loads(meta_path.read_text())
    assert meta["content"]["sha256"] == __import__("hashlib").sha256(images[0].read_bytes()).hexdigest()
    assert len(meta["styles"]) == 2
    assert meta["parameters"]["style_blend"] == [3.0, 1.0] and meta["parameters"]["seed"] == 4
    assert meta["parameters"]["size"] == 32 and meta["parameters"]["content_layers"] == ["relu4_2"]
    # The precision the run used, not the "auto" it was asked for.
    assert meta["parameters"]["precision"] == resolve_precision(torch.device("cpu"), "auto") != "auto"
    assert meta["weights"] == {"source": "caffe", "preprocessing": "caffe", "sha256": CAFFE_WEIGHTS_SHA256}
    assert set(meta["final_losses"]) == {"content", "style", "tv", "total"}
    assert meta["iterations"] == 2 and meta["wall_time_s"] > 0
    assert meta["device"]["type"] == "cpu"
    assert (meta["device"]["threads"], meta["device"]["threads_from"]) == (1, "threads setting")
    assert {"torch", "torchvision", "pillow", "python"} <= set(meta["versions"])
    assert meta["runtime"]["weights"] == "caffe"


def test_progress_lines_when_not_a_terminal(images, tmp_path, capsys):
    out = tmp_path / "o.png"
    args = [a for a in FAST if a != "--quiet"]
    assert stylize(images, str(out), *args) == 0
    err = capsys.readouterr().err
    assert "scale 1/1 32x24 iter 2/2 done" in err
    assert f"wrote {out} (32x24)" in err


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = save(photo_like(48, 64), tmp_path / "good.png")
    truncated = tmp_path / "truncated.jpg"
    Image.open(good).save(truncated, "JPEG")
    truncated.write_bytes(truncated.read_bytes()[:400])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    unreadable = tmp_path / "secret.png"
    unreadable.write_bytes(good.read_bytes())
    unreadable.chmod(0)
    huge = tmp_path / "huge.png"
    Image.new("L", (600, 500)).save(huge)
    sliver = tmp_path / "sliver.png"
    Image.new("RGB", (400, 20)).save(sliver)
    return {
        "missing": tmp_path / "nope.png",
        "truncated": truncated,
        "text": text,
        "empty": empty,
        "unreadable": unreadable,
        "huge": huge,
        "sliver": sliver,
        "directory": tmp_path,
    }


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("truncated", "truncated or corrupt"),
        ("text", "not an image"),
        ("empty", "empty file"),
        ("unreadable", "cannot read"),
        ("huge", "over the limit"),
        ("sliver", "too narrow"),
        ("directory", "is a directory"),
    ],
)
@pytest.mark.parametrize("role", ["content", "style"])
def test_bad_input_files(images, tmp_path, capsys, monkeypatch, kind, message, role):
    bad = _bad_files(tmp_path)[kind]
    if kind == "unreadable" and os.geteuid() == 0:  # root reads files whatever their mode: make it fail
        real = Path.read_bytes

        def denied(self):
            if self == bad:
                raise PermissionError(13, "Permission denied")
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    content, style = (bad, images[1]) if role == "content" else (images[0], bad)
    out, meta = tmp_path / "out.png", tmp_path / "out.json"
    code = main(
        ["stylize", str(content), str(style), "-o", str(out), "--metadata", str(meta), "--max-pixels", "200000", *FAST]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nst: error: ") and message in err and str(bad) in err
    assert not out.exists() and not meta.exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--size", "0"], "--size must be"),
        (["--iterations", "-5"], "--iterations must be 0..100000, got -5"),
        (["--content-weight", "-1"], "--content-weight must be"),
        (["--style-scale", "100"], "--style-scale must be"),
        (["--scales", "9"], "argument --scales: N (a count of scales) must be 1..6"),
        (["--iterations", "x"], "comma-separated integers"),
        (["--pooling", "min"], "invalid choice"),
        (["--quality", "0"], "quality must be"),
        (["--max-pixels", "0"], "--max-pixels must be"),
        (["--threads", "-1"], "argument --threads: must be 0 (auto) or a whole number 1..1024"),
        (["--device", "tpu"], "device must be"),
        (["--style-blend", "1,2,3"], "--style-blend has 3 weights for 1"),
        (["--init", "image"], "needs an init image (--init-image)"),
        (["--weights", "/nonexistent/vgg.pth"], "weights file not found"),
        (["--style-layers", "relu7_1"], "unknown VGG-19 layer"),
    ],
)
def test_bad_options(images, tmp_path, capsys, option, message):
    out = tmp_path / "out.png"
    code = stylize(images, str(out), *FAST, *option)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_cuda_without_a_gpu_is_a_clear_error(images, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert stylize(images, str(tmp_path / "o.png"), "--device", "cuda", *FAST) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_console_script_runs(images, tmp_path):
    """The installed `nst` entry point, as a user runs it."""
    exe = Path(sys.executable).parent / "nst"
    out = tmp_path / "cli.png"
    proc = subprocess.run(
        [str(exe), "stylize", str(images[0]), str(images[1]), "-o", str(out), *FAST],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    bad = subprocess.run(
        [str(exe), "stylize", str(images[0]), "-o", str(out)], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_bf16_is_refused_where_the_cpu_would_emulate_it(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("nst_batch.core.device.bf16_is_native", lambda device: False)  # an AVX2-only CPU, on any CPU
    out = tmp_path / "o.png"
    assert stylize(images, str(out), "--device", "cpu", "--precision", "bf16", *FAST) == 2
    err = capsys.readouterr().err
    assert "native bf16" in err and "use fp32" in err and err.count("\n") == 1
    assert not out.exists()


def test_an_output_too_large_for_the_memory_budget_is_refused_before_any_work(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NST_MAX_MEMORY", "1200M")  # the process alone is estimated at 900 MiB
    out = tmp_path / "o.png"
    assert stylize(images, str(out), "--size", "2000", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2000x1500 px output needs about" in err and "NST_MAX_MEMORY=1200M" in err
    fits = int(err.split("use --size ")[1].split()[0].rstrip(","))
    assert 16 <= fits < 2000
    assert not out.exists()
    # The size the message offers is accepted.
    assert stylize(images, str(out), "--size", str(min(fits, 32)), "--scales", "1", "--iterations", "1", "--quiet") == 0


@pytest.mark.parametrize(
    "flags, sides",
    [
        ([], (256, 512, 1024)),  # the default: from --coarse-size, doubling
        (["--scales", "auto", "--coarse-size", "300"], (300, 600, 1024)),
        (["--scales", "2"], (512, 1024)),  # a count: relative sizes, halving
        (["--scales", "0.25,1"], (256, 1024)),
    ],
)
def test_the_scale_flags_make_the_schedule(flags, sides):
    from nst_batch.cli.parser import build_parser, config_from_args

    args = build_parser().parse_args(["stylize", "c.jpg", "s.jpg", "-o", "o.png", "--size", "1024", *flags])
    assert config_from_args(args).sides() == sides


def test_metadata_or_output_on_a_device_fifo_or_symlink_is_refused_before_any_work(images, tmp_path, capsys):
    import stat

    fifo, out_fifo = tmp_path / "meta.fifo", tmp_path / "out.png"
    os.mkfifo(fifo)
    os.mkfifo(out_fifo)
    to_device = tmp_path / "meta.json"
    to_device.symlink_to("/dev/full")
    for flag, path, kind in (
        ("--metadata", fifo, "a FIFO"),
        ("--metadata", to_device, "a symbolic link"),
        ("-o", out_fifo, "a FIFO"),
    ):
        args = ["stylize", str(images[0]), str(images[1]), "-o", str(tmp_path / "o.png"), *FAST]
        args = [*args[:3], "-o", str(path), *FAST] if flag == "-o" else [*args, flag, str(path)]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"exists and is {kind}, not a regular file" in err and flag in err, err
    assert (
        stat.S_ISFIFO(os.lstat(fifo).st_mode) and to_device.is_symlink() and stat.S_ISCHR(os.stat("/dev/full").st_mode)
    )
    assert not (tmp_path / "o.png").exists()


def test_the_metadata_says_whether_each_scale_replayed_from_a_cuda_graph(images, tmp_path):
    """On the CPU no graph applies: every scale says so (null), and the summary line is quiet about graphs."""
    from nst_batch.cli.reporting import graphs_line

    meta_path = tmp_path / "o.json"
    assert stylize(images, str(tmp_path / "o.png"), "--metadata", str(meta_path), *FAST) == 0
    scales = json.loads(meta_path.read_text())["scales"]
    assert scales and all(s["graphed"] is None and s["capture_error"] == "" for s in scales)
    assert graphs_line(scales) == ""
    assert (
        graphs_line([{"graphed": True, "capture_error": ""}, {"graphed": False, "capture_error": "empty graph"}])
        == ", CUDA graphs: 1 of 2 scales replayed (capture failed: empty graph)"
    )
    kept = [{"graphed": True, "capture_error": "", "graph_kept": True}, {"graphed": True, "capture_error": ""}]
    assert graphs_line(kept) == ", CUDA graphs: 2 of 2 scales replayed, 1 from an earlier photo's capture"
    assert all(s["graph_kept"] is False for s in scales)


def test_every_style_setting_is_an_option_whose_help_and_default_come_from_the_config():
    """Help is written once, on the StyleConfig field; the CLI's options and the manifest's schema
    read it there (a field added to StyleConfig becomes an option with its help and default)."""
    import dataclasses

    from nst_batch.cli.parser import build_parser
    from nst_batch.core import StyleConfig
    from nst_batch.tasks.planning.manifest import Params

    stylize = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["stylize"]
    by_dest = {a.dest: a for a in stylize._actions}
    schema = Params.model_json_schema()["properties"]
    for f in dataclasses.fields(StyleConfig):
        action = by_dest[f.name]
        assert f.metadata["help"], f.name
        if f.name != "init":  # --init's default is None: --init-image decides
            assert action.default == getattr(StyleConfig(), f.name), f.name
        default = getattr(StyleConfig(), f.name)
        if not isinstance(default, bool):
            shown = f.metadata.get("shown", ",".join(map(str, default)) if isinstance(default, tuple) else str(default))
            assert f"(default {shown}" in " ".join(action.help.split()), (f.name, action.help)
        assert schema[f.name]["description"] == f.metadata["help"], f.name
    assert by_dest["coarse_size"].help.startswith(
        "with --scales auto: the first scale's max side, px, whatever --size is"
    )
    assert by_dest["match_luminance"].option_strings == ["--no-match-luminance"]


def test_scales_has_one_grammar_in_the_cli_and_in_manifests(tmp_path):
    """``--scales 3`` and ``scales: 3`` are the same three sizes (a manifest refused the count)."""
    from nst_batch.cli.parser import parse_scales
    from nst_batch.tasks.planning.manifest import parse_manifest

    for text in ("3", "auto", "0.5,1"):
        manifest = parse_manifest(
            f"styles: {{a: a.png}}\ncontents: [c.png]\ndefaults: {{scales: {text!r}}}\n", "m.yaml"
        )
        assert tuple(manifest.defaults.given()["scales"]) == parse_scales(text)
    manifest = parse_manifest("styles: {a: a.png}\ncontents: [c.png]\ndefaults: {scales: 3}\n", "m.yaml")
    assert tuple(manifest.defaults.given()["scales"]) == (0.25, 0.5, 1.0)


def test_nst_stylize_and_a_batch_pair_go_through_one_pipeline_and_record_one_format(images, tmp_path):
    """`nst stylize` is a one-pair job of the batch's pipeline: the same inputs and parameters give
    the same image as a batch pair, and --metadata is the batch sidecar's format (without what
    only a batch has: the fingerprint for skipping, the flow run, the manifest, the Dask worker)."""
    from nst_batch.core import StyleConfig
    from nst_batch.tasks.pair.pipeline import run_pair
    from nst_batch.tasks.planning.jobs import BatchSettings, PairJob, StyleRef

    out, meta_path = tmp_path / "one" / "o.png", tmp_path / "one" / "o.json"
    assert stylize(images, str(out), "--metadata", str(meta_path), *FAST, "--precision", "fp32") == 0
    meta = json.loads(meta_path.read_text())
    settings = BatchSettings(str(tmp_path / "batch"), "png")
    pair = PairJob(
        "o",
        str(images[0]),
        (StyleRef("s", str(images[1])),),
        StyleConfig(size=32, scales=(1.0,), iterations=(2,), precision="fp32"),
    )
    assert run_pair(pair, settings).status == "produced"
    sidecar = json.loads((tmp_path / "batch" / "o.json").read_text())
    assert set(sidecar) - {"fingerprint", "run_id", "worker", "manifest"} == set(meta) - {"init_image", "runtime"}
    assert meta["parameters"] == sidecar["parameters"] and meta["content"] == sidecar["content"]
    assert meta["final_losses"] == pytest.approx(sidecar["final_losses"], rel=1e-5)
    assert meta["output_sha256"] == sidecar["output_sha256"]  # the same image, byte for byte


def test_nst_stylize_reads_and_writes_s3(images, tmp_path, capsys):
    """A one-pair job takes s3:// paths as the batch does: inputs read, output and metadata
    written through the same storage (a real S3-protocol server on 127.0.0.1)."""
    import boto3

    from tests.s3_server import s3_server

    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="pics")
        s3.upload_file(str(images[0]), "pics", "in/photo.png")
        s3.upload_file(str(images[1]), "pics", "in/paint.png")
        assert (
            main(
                [
                    "stylize",
                    "s3://pics/in/photo.png",
                    "s3://pics/in/paint.png",
                    "-o",
                    "s3://pics/out/o.jpg",
                    "--metadata",
                    "s3://pics/out/o.json",
                    *FAST,
                ]
            )
            == 0
        )
        meta = json.loads(s3.get_object(Bucket="pics", Key="out/o.json")["Body"].read())
        image = s3.get_object(Bucket="pics", Key="out/o.jpg")["Body"].read()
        assert meta["content"]["uri"] == "s3://pics/in/photo.png" and meta["output_bytes"] == len(image)
        assert Image.open(__import__("io").BytesIO(image)).format == "JPEG"
        assert (
            main(["stylize", "s3://pics/in/photo.png", "s3://pics/in/paint.png", "-o", "s3://pics/in/photo.png", *FAST])
            == 2
        )
        assert "is the content" in capsys.readouterr().err  # an output that is an input, refused before any work
        assert (
            main(["stylize", "s3://pics/in/nothing.png", "s3://pics/in/paint.png", "-o", "s3://pics/out/x.png", *FAST])
            == 2
        )
    assert not (tmp_path / "s3:").exists() and not Path("s3:").exists()
