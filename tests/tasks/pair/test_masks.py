"""A pair's mask read into regions (nst_batch.tasks.pair.masks): one region per listed colour it
holds, the style it takes by name, and every pixel of a colour not listed refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.pair.masks import MaskInput, mask_regions


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


def _halves() -> np.ndarray:
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[:, :3] = (255, 0, 0)  # left: red
    pixels[:, 3:] = (0, 0, 255)  # right: blue
    return pixels


def test_each_listed_colour_becomes_a_region_with_its_styles_index_or_none_for_keep():
    regions = mask_regions(
        _png(_halves()), "m.png", {"#f00": "waves", "#0000ff": "keep", "#00ff00": "starry"}, ["starry", "waves"]
    )
    assert [(r.style, r.mask.shape, float(r.mask.sum())) for r in regions] == [(1, (4, 6), 12.0), (None, (4, 6), 12.0)]
    assert float(regions[0].mask[:, :3].min()) == 1.0 and float(regions[0].mask[:, 3:].max()) == 0.0


def test_an_unlisted_colour_is_refused_with_how_many_pixels_and_an_example():
    pixels = _halves()
    pixels[0, 0] = (128, 0, 128)  # an anti-aliased brush's in-between colour
    with pytest.raises(InputError, match=r"m.png: 1 pixels \(4.2%\) .* e.g. #800080"):
        mask_regions(_png(pixels), "m.png", {"#f00": "waves", "#00f": "keep"}, ["waves"])


def test_a_mask_that_is_no_image_or_names_an_unknown_style_is_one_line():
    with pytest.raises(InputError, match="not a mask image Pillow can read"):
        mask_regions(b"not an image", "m.png", {"#f00": "waves"}, ["waves"])
    with pytest.raises(InputError, match="mask_styles"):
        MaskInput("m.png", _png(_halves()), {"#f00": "nowhere"}, ("waves",))
    mask = MaskInput("m.png", _png(_halves()), {"#f00": "waves", "#00f": "keep"}, ("waves",))
    assert len(mask.regions()) == 2 and mask.record()["styles"] == {"#f00": "waves", "#00f": "keep"}
