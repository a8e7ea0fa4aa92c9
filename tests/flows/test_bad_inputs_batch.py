"""A batch mixing good photos with every kind of bad file: the good ones are produced, each bad
one is named in the summary with a one-line reason, the run fails, nothing partial is left."""

import json

import numpy as np
from PIL import Image

from nst_batch.flows.stylize_batch import stylize_batch
from tests.flows.helpers import TINY, save
from tests.synthetic import painting_like, photo_like


def _photo_pil(w=64, h=48) -> Image.Image:
    return Image.fromarray((photo_like(h, w)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_every_bad_image_fails_alone(prefect_server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo_pil().save(photos / "good.png")
    _photo_pil().convert("L").save(photos / "grey.png")
    _photo_pil().convert("CMYK").save(photos / "cmyk.jpg")
    Image.fromarray(np.asarray(_photo_pil().convert("L"), np.uint16) * 257).save(photos / "deep16.png")
    rgba = _photo_pil().convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(photos / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo_pil().save(photos / "rotated.jpg", exif=exif.tobytes())
    _photo_pil().save(photos / "truncated.jpg")
    (photos / "truncated.jpg").write_bytes((photos / "truncated.jpg").read_bytes()[:300])
    (photos / "text.jpg").write_text("hello, not a photo")
    (photos / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(photos / "tiny.png")
    Image.new("RGB", (400, 300)).save(photos / "huge.png")
    save(painting_like(40, 40), tmp_path / "styles" / "paint.png")
    names = [
        "good.png",
        "grey.png",
        "cmyk.jpg",
        "deep16.png",
        "alpha.png",
        "rotated.jpg",
        "missing.png",
        "truncated.jpg",
        "text.jpg",
        "empty.png",
        "tiny.png",
        "huge.png",
    ]
    contents = "".join(f"  - photos/{n}\n" for n in names)
    (tmp_path / "m.yaml").write_text(
        TINY + "output: out\nmax_pixels: 100000\nstyles: {paint: styles/paint.png}\ncontents:\n" + contents
    )

    state = stylize_batch(manifest=str(tmp_path / "m.yaml"), return_state=True)
    assert state.is_failed()
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"planned": 12, "produced": 6, "skipped": 0, "failed": 6}
    reasons = {f["name"].split("__")[0]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"missing", "truncated", "text", "empty", "tiny", "huge"}
    expected = {
        "missing": "no such file",
        "truncated": "truncated or corrupt",
        "text": "not an image",
        "empty": "empty file",
        "tiny": "too small",
        "huge": "over the limit",
    }
    for name, words in expected.items():
        assert words in reasons[name] and f"{name}." in reasons[name] and "\n" not in reasons[name], reasons[name]
    for good in ("good", "grey", "cmyk", "deep16", "alpha", "rotated"):
        assert (out / f"{good}__paint.png").exists(), good
    assert Image.open(out / "rotated__paint.png").size == (24, 32)  # portrait after EXIF rotation
    assert Image.open(out / "alpha__paint.png").mode == "RGBA"
    grey = np.asarray(Image.open(out / "deep16__paint.png").convert("L"), np.float32)
    assert 20 < grey.mean() < 235  # 16-bit input scaled, not clipped to white
    leftovers = [
        p.name for p in out.rglob("*") if p.is_file() and (p.name.startswith(tuple(expected)) or p.suffix == ".part")
    ]
    assert leftovers == []
