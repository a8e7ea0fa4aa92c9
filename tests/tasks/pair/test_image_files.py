"""Decoding every image mode Pillow reads, EXIF rotation, and each kind of bad file."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from nst_batch.tasks.errors import ImageInputError
from nst_batch.tasks.pair.image_files import decode_image, encode_image, load_image, output_format


def _bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _rgb(w=8, h=6):
    array = np.zeros((h, w, 3), np.uint8)
    array[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    array[..., 1] = 128
    array[..., 2] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    return Image.fromarray(array, "RGB")


def test_rgb_png_round_trip_is_exact():
    image = _rgb()
    loaded = decode_image(_bytes(image), "a.png")
    assert loaded.rgb.shape == (1, 3, 6, 8) and loaded.rgb.is_contiguous() and loaded.alpha is None
    back = decode_image(encode_image(loaded.rgb, "PNG"), "b.png")
    assert torch.equal(back.rgb, loaded.rgb)
    assert np.array_equal(np.asarray(image), (loaded.rgb[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


@pytest.mark.parametrize("mode", ["L", "1", "P", "YCbCr", "CMYK"])
def test_modes_convert_to_rgb(mode):
    src = _rgb().convert(mode)
    fmt = "JPEG" if mode in ("YCbCr", "CMYK") else "PNG"
    loaded = decode_image(_bytes(src, fmt), f"x.{fmt.lower()}")
    assert loaded.rgb.shape == (1, 3, 6, 8)
    expected = torch.from_numpy(
        np.asarray(Image.open(io.BytesIO(_bytes(src, fmt))).convert("RGB"), np.float32) / 255
    ).permute(2, 0, 1)
    assert torch.allclose(loaded.rgb[0], expected, atol=2 / 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    array = np.full((4, 4), 32768, np.uint16)  # mid-grey in 16 bits
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    loaded = decode_image(_bytes(image), "g16.png")
    assert loaded.rgb.mean().item() == pytest.approx(0.5, abs=0.01)  # convert("L") would clip to white


def test_rgba_is_flattened_on_white_and_alpha_kept():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    loaded = decode_image(_bytes(rgba), "t.png")
    assert loaded.rgb[0, :, 1, 1].tolist() == [1.0, 1.0, 1.0]
    assert loaded.rgb[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert loaded.alpha is not None and loaded.alpha[0, 0, 0, 0] == 1.0 and loaded.alpha[0, 0, 1, 1] == 0.0
    png = Image.open(io.BytesIO(encode_image(loaded.rgb, "PNG", alpha=loaded.alpha)))
    assert png.mode == "RGBA" and png.getpixel((1, 1))[3] == 0
    jpeg = Image.open(io.BytesIO(encode_image(loaded.rgb, "JPEG", alpha=loaded.alpha)))
    assert jpeg.mode == "RGB"


def test_grey_with_alpha():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0)).convert("LA")
    loaded = decode_image(_bytes(image), "la.png")
    assert loaded.alpha is not None and loaded.rgb.min().item() == 1.0


def test_palette_with_transparency():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    data = _bytes(p, transparency=0)
    loaded = decode_image(data, "p.png")
    assert loaded.alpha is not None
    assert loaded.rgb[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0] and loaded.rgb[0, :, 2, 2].tolist() == [1.0, 1.0, 1.0]


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (8, 4), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = decode_image(_bytes(image, "JPEG", exif=exif.tobytes(), quality=100), "r.jpg")
    assert loaded.rgb.shape == (1, 3, 8, 4)  # portrait after rotation
    assert loaded.original_size == (4, 8)
    assert loaded.rgb[0, :, 0, -1].mean() > 0.5  # the white corner moved to the top right


def test_icc_profile_is_converted_to_srgb():
    lab_ish = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    image = _rgb()
    data = _bytes(image, icc_profile=lab_ish.tobytes())
    loaded = decode_image(data, "icc.png")
    assert torch.allclose(loaded.rgb, decode_image(_bytes(image), "plain.png").rgb, atol=3 / 255)


def test_max_side_downsizes_but_never_enlarges():
    big = decode_image(_bytes(_rgb(80, 60)), "big.png", max_side=20)
    assert big.rgb.shape[-2:] == (15, 20) and big.original_size == (80, 60)
    small = decode_image(_bytes(_rgb(8, 6)), "small.png", max_side=20)
    assert small.rgb.shape[-2:] == (6, 8)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture\n", "not an image"),
        (_bytes(_rgb(64, 64), "JPEG")[:300], "truncated or corrupt"),
        (_bytes(_rgb(64, 64), "PNG")[:-40], "truncated or corrupt"),
    ],
)
def test_bad_bytes(data, message):
    with pytest.raises(ImageInputError, match=message):
        decode_image(data, "bad.jpg")


def test_pixel_limit_is_checked_from_the_header():
    data = _bytes(Image.new("L", (300, 200)))
    with pytest.raises(
        ImageInputError, match=r"300x200 = 60,000 pixels is over the limit of 50,000.*raise max_pixels\)"
    ):
        decode_image(data, "bomb.png", max_pixels=50_000)
    assert decode_image(data, "ok.png", max_pixels=60_000).rgb.shape == (1, 3, 200, 300)


def test_file_errors(tmp_path):
    with pytest.raises(ImageInputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageInputError, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("name, fmt", [("a.png", "PNG"), ("a.JPG", "JPEG"), ("a.jpeg", "JPEG"), ("a.webp", "WEBP")])
def test_output_format_by_extension(name, fmt):
    assert output_format(name) == fmt
    data = encode_image(torch.rand(1, 3, 5, 7), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt


@pytest.mark.parametrize("name", ["a.gif", "a", "a.tiff"])
def test_unsupported_output_extension(name):
    with pytest.raises(ImageInputError, match="unsupported output extension"):
        output_format(name)


@pytest.mark.parametrize("dtype, white", [("int32", 2**31 - 1), ("uint16", 65535), ("uint8", 255)])
def test_integer_tiffs_of_any_width_are_scaled_by_their_real_range(dtype, white):
    """A 32-bit TIFF at half its range is mid-grey, not almost white (it was divided by 65535)."""
    import io

    import numpy as np
    from PIL import Image

    from nst_batch.tasks.pair.image_files import decode_image

    ramp = (np.linspace(0, 1, 64).reshape(8, 8) * white).astype(dtype)
    data = io.BytesIO()
    Image.fromarray(ramp).save(data, format="TIFF")
    rgb = decode_image(data.getvalue(), "ramp.tif").rgb
    assert abs(float(rgb.mean()) - 0.5) < 0.01
    assert float(rgb.min()) == 0.0 and float(rgb.max()) == 1.0
