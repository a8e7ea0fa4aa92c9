"""A photo's mask read into regions: an image whose colours say which style each part takes, or
``keep`` (the photo stays itself there). Every pixel must have a listed colour: an anti-aliased
brush's in-between colours are refused, with how many pixels and an example, since they would
belong to no region."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from nst_batch.core.regions import Region
from nst_batch.tasks.basics import sha256_hex
from nst_batch.tasks.errors import InputError
from nst_batch.tasks.planning.masks import KEEP, colour_name, mask_styles_problems, parse_colour

MAX_MASK_PIXELS = 64_000_000  # a mask is a drawing: 64 MP is far beyond any photo it maps


def mask_regions(data: bytes, name: str, mask_styles: Mapping[str, str], style_names: Sequence[str]) -> list[Region]:
    """The regions of a mask image's bytes: one per listed colour that it holds, with its style's
    index in ``style_names`` (None for keep); ``mask_styles`` checked against them already (see
    :class:`MaskInput`). Raises :class:`InputError` (one line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_MASK_PIXELS:
                    raise InputError(
                        f"{name}: the mask has {image.width * image.height:,} pixels, over {MAX_MASK_PIXELS:,}"
                    )
                pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{name}: not a mask image Pillow can read ({' '.join(str(exc).split())[:120]})") from None
    codes = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    listed = {
        (r << 16) | (g << 8) | b: (colour, label)
        for colour, label in mask_styles.items()
        for r, g, b in [parse_colour(colour)]
    }
    known = np.isin(codes, np.fromiter(listed, dtype=np.int32))
    if not known.all():
        off = int((~known).sum())
        example = int(codes[~known][0])
        raise InputError(
            f"{name}: {off:,} pixels ({off / codes.size:.1%}) have colours mask_styles does not list, e.g. "
            f"{colour_name(((example >> 16) & 255, (example >> 8) & 255, example & 255))}: list them, or save the mask "
            "without anti-aliasing",
            settings=["mask_styles"],
        )
    import torch

    regions = []
    for code, (colour, label) in listed.items():
        inside = codes == code
        if inside.any():
            regions.append(
                Region(
                    torch.from_numpy(inside.astype(np.float32)),
                    None if label == KEEP else style_names.index(label),
                    f"{colour} ({label})",
                )
            )
    return regions


@dataclass(frozen=True)
class MaskInput:
    """A pair's mask as read: its bytes, what its colours take, and the pair's style names in
    order (a colour's style is found among them)."""

    uri: str
    data: bytes
    styles: Mapping[str, str]  # colour -> a style's name or "keep"
    style_names: tuple[str, ...]

    def __post_init__(self) -> None:
        problems = mask_styles_problems(self.styles, self.style_names)
        if problems:
            raise InputError(f"mask_styles: {problems[0]}", settings=["mask_styles"])

    def regions(self) -> list[Region]:
        return mask_regions(self.data, self.uri, self.styles, self.style_names)

    def record(self) -> dict[str, object]:
        """What a sidecar says of it."""
        return {"uri": self.uri, "sha256": sha256_hex(self.data), "styles": dict(self.styles)}
