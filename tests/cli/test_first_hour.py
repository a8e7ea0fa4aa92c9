"""What a new user meets first: outputs that would destroy inputs, unwritable folders, typos, the
messages' words, --init-image, --save-every, --version and a fast --help."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_batch.cli.main import main
from tests.cli.helpers import stylize
from tests.cli.test_stylize_cli import FAST
from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like


@pytest.fixture
def no_stylizing(monkeypatch):
    """Fail the test if the optimisation starts: the checks must come before any work."""
    import nst_batch.tasks.pair.produce as sf  # a pair's pixels, nst stylize's too

    def refuse(*args, **kwargs):
        raise AssertionError("the stylization started")

    monkeypatch.setattr(sf, "stylize", refuse)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nst: error: "), err
    return err


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_an_output_that_is_the_content_is_refused_and_the_photo_kept(images, tmp_path, capsys, no_stylizing, spelling):
    photo = images[0]
    before = photo.read_bytes()
    if spelling == "same":
        out = photo
    elif spelling == "dotted":
        out = tmp_path / "x" / ".." / photo.name
        (tmp_path / "x").mkdir()
    else:
        out = tmp_path / "link.png"
        out.symlink_to(photo)
    assert main(["stylize", str(photo), str(images[1]), "-o", str(out), *FAST]) == 2
    err = _one_error_line(capsys)
    assert "is the content" in err and "--output" in err
    assert photo.read_bytes() == before


def test_metadata_on_the_style_or_on_the_output_is_refused(images, tmp_path, capsys, no_stylizing):
    out = tmp_path / "o.png"
    assert stylize(images, str(out), "--metadata", str(images[1]), *FAST) == 2
    assert "--metadata" in _one_error_line(capsys)
    assert stylize(images, str(out), "--metadata", str(out), *FAST) == 2
    assert "is the --output" in _one_error_line(capsys)
    assert not out.exists()


def test_an_output_folder_that_cannot_be_written_is_found_before_any_work(
    images, tmp_path, capsys, no_stylizing, monkeypatch
):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert stylize(images, str(blocker / "out.png"), *FAST) == 2
    assert "cannot write there" in _one_error_line(capsys)
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # what a read-only folder answers (root ignores chmod)
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert stylize(images, str(tmp_path / "ro" / "out.png"), *FAST) == 2
    assert "Permission denied" in _one_error_line(capsys)
    assert stylize(images, str(tmp_path / "o.png"), "--metadata", str(tmp_path / "ro" / "m.json"), *FAST) == 2
    assert "--metadata" in _one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_init_image_implies_init_image_and_contradictions_are_refused(images, tmp_path, capsys):
    out, meta = tmp_path / "o.png", tmp_path / "o.json"
    assert stylize(images, str(out), "--init-image", str(images[1]), "--metadata", str(meta), *FAST) == 0
    recorded = json.loads(meta.read_text())
    assert recorded["parameters"]["init"] == "image" and recorded["init_image"]["path"] == str(images[1])
    assert stylize(images, str(out), "--init", "noise", "--init-image", str(images[1]), *FAST) == 2
    assert "--init noise" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "args, wanted",
    [
        (["--preserve-colour"], "did you mean --preserve-color?"),
        (["--iteration", "5"], "did you mean --iterations?"),  # abbreviations are typos, not --iterations
        (["--pooling", "mx"], "did you mean max?"),
        (["--iterations", "-3"], "--iterations must be 0..100000, got -3"),  # as written, not (-3,)
        (["--scales", "0.5,0.25"], "--scales must be strictly increasing, got 0.5, 0.25"),
        (["--max-pixels", "100"], "raise --max-pixels"),  # the flag, though the image code says max_pixels
        (["--tile-size", "128", "--tile-overlap", "64"], "--tile-overlap must be >= 0 and under half of --tile-size"),
    ],
)
def test_messages_say_flags_values_as_written_and_the_nearest_option(images, tmp_path, capsys, args, wanted):
    assert stylize(images, str(tmp_path / "o.png"), *FAST, *args) == 2
    assert wanted in _one_error_line(capsys)


def test_a_mistyped_command_gets_a_suggestion(capsys):
    assert main(["stylise", "a.png"]) == 2
    assert "did you mean stylize?" in _one_error_line(capsys)


def test_metadata_records_the_files_real_size(tmp_path):
    """A JPEG is decoded at a reduced scale (draft) for a small output; its size is still the file's."""
    photo = tmp_path / "big.jpg"
    Image.fromarray((photo_like(768, 1024)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(photo, quality=90)
    style = save(painting_like(40, 40), tmp_path / "s.png")
    meta = tmp_path / "m.json"
    assert main(["stylize", str(photo), str(style), "-o", str(tmp_path / "o.png"), "--metadata", str(meta), *FAST]) == 0
    recorded = json.loads(meta.read_text())
    assert recorded["content"]["size"] == [1024, 768] and recorded["output_size"] == [32, 24]


def test_save_every_keeps_the_best_image_when_the_run_is_interrupted(images, tmp_path):
    from nst_batch.core import StyleConfig
    from nst_batch.tasks.pair.stylize_files import stylize_files

    out = tmp_path / "o.png"
    seen = []

    def stop_after(step):
        seen.append(step.iteration)
        if step.iteration == 3:
            raise KeyboardInterrupt

    cfg = StyleConfig(size=32, scales=(1.0,), iterations=(10,))
    with pytest.raises(KeyboardInterrupt):
        stylize_files(images[0], [images[1]], out, cfg, on_step=stop_after, save_every=2)
    assert not out.exists()  # the final name holds only a finished image
    with Image.open(tmp_path / "o.checkpoint.png") as saved:  # written at iteration 2, atomically
        assert saved.size == (32, 24)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    stylize_files(images[0], [images[1]], out, cfg, save_every=2)  # a finished run leaves no checkpoint
    assert out.exists() and not (tmp_path / "o.checkpoint.png").exists()


def test_version_and_a_help_that_does_not_load_pytorch():
    exe = Path(sys.executable).parent / "nst"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("nst ")
    probe = (
        "import sys; from nst_batch.cli.main import main\n"
        "try:\n    main(['stylize', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'prefect' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert loaded.stdout.strip().splitlines()[-1] == "False False", loaded.stdout + loaded.stderr
