"""Styles by region (Gatys, Ecker, Bethge, Hertzmann & Shechtman, CVPR 2017, section 4): masks
that split the photo into parts, each taking one style, or none.

A region's style term is the style loss on the features inside it: for Gram matrices, the
masked Gram ``(F m)(F m)^T / (C sum m^2)`` (the mask ``m`` downscaled to the layer's positions by
area, so its edges are soft) against that style's targets; for the sliced-Wasserstein loss, the
distribution of the positions the region holds (``m >= 0.5``). Each region's term is weighted
by its share of the image, so a region's pixels are pulled as hard as a whole image's, whatever
its size. The style images are not masked: a region takes the whole of its painting.

A ``keep`` region stays the photo: the optimiser works on ``keep * photo + (1 - keep) * x``,
so nothing there moves and no gradient leaks in, and the keep mask is feathered by
``FEATHER_PX`` px at each scale so the edge is soft without a halo of style around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nst_batch.core.config import StyleConfig
from nst_batch.core.errors import ConfigError, ShapeError
from nst_batch.core.image_ops import fit_size
from nst_batch.core.vgg import downsamplings

FEATHER_PX = 2  # the keep mask's soft edge at each scale: a box blur of this radius
MIN_REGION_POSITIONS = 4  # a styled region must hold this many positions of the deepest style layer at the first scale
MAX_LEAST_SHARE = 0.05  # ... or this share of the photo, whichever is less
ASPECT_TOLERANCE = (
    0.02  # a mask's aspect ratio may differ from the photo's by this fraction (rounding of resized masks)
)


@dataclass(frozen=True)
class Region:
    """A part of the photo and what it takes.

    ``mask``: (H, W) in [0, 1], any size with the photo's aspect ratio; the regions' masks sum to
    1 at every pixel. ``style``: the index of its style (in ``styles`` or ``targets``), or None:
    the photo stays itself there."""

    mask: Tensor
    style: int | None
    label: str = ""  # how messages name it (a colour, a style's name)


def check_regions(regions: Sequence[Region], num_styles: int, content_hw: tuple[int, int], cfg: StyleConfig) -> None:
    """Raise :class:`ShapeError` / :class:`ConfigError` unless ``regions`` can be run: masks of the
    photo's shape that partition it, known styles, no region too small to carry its style."""
    if not regions:
        return
    for index, region in enumerate(regions):
        name = region.label or f"region {index + 1}"
        if region.mask.dim() != 2:
            raise ShapeError(f"{name}: expected a mask of shape (H, W), got {tuple(region.mask.shape)}")
        if region.style is not None and not 0 <= region.style < num_styles:
            raise ShapeError(f"{name}: style #{region.style + 1} of {num_styles}")
    shapes = {tuple(r.mask.shape) for r in regions}
    if len(shapes) != 1:
        raise ShapeError(f"the regions' masks differ in size: {sorted(shapes)}")
    (mh, mw), (ch, cw) = shapes.pop(), content_hw
    if abs((mw / mh) / (cw / ch) - 1) > ASPECT_TOLERANCE:
        raise ConfigError(
            f"the mask is {mw}x{mh} px, the photo {cw}x{ch}: their aspect ratios differ", settings=["mask"]
        )
    total = torch.stack([r.mask.float() for r in regions]).sum(0)
    if not bool(((total - 1).abs() < 1e-3).all()):
        raise ShapeError("the regions' masks must sum to 1 at every pixel")
    if all(r.style is None for r in regions):
        raise ConfigError("every region keeps the photo: give at least one region a style", settings=["mask"])
    if cfg.tile_size and any(cfg.tiled(*fit_size(ch, cw, side)) for side in cfg.sides()):
        raise ConfigError(
            "masks and tile_size cannot be combined: tiles see the whole style's targets", settings=["tile_size"]
        )
    if cfg.style_blend:
        raise ConfigError(
            "style_blend does not apply with a mask: each region takes one style", settings=["style_blend"]
        )
    # The first scale is the coarsest: its deepest style layer has the fewest positions.
    h, w = fit_size(ch, cw, cfg.sides()[0])
    deepest = max(downsamplings(layer) for layer in cfg.style_layers)
    positions = max(1, h >> deepest) * max(1, w >> deepest)
    # A tiny output's deepest layer has few positions anyway: there a twentieth of it will do.
    least = min(MIN_REGION_POSITIONS / positions, MAX_LEAST_SHARE)
    for index, region in enumerate(regions):
        share = float(region.mask.float().mean())
        if region.style is not None and share < least:
            raise ConfigError(
                f"{region.label or f'region {index + 1}'} covers {share:.1%} of the photo, too small to carry a style "
                f"(at least {least:.1%} at this size)",
                settings=["mask"],
            )


def masks_at(regions: Sequence[Region], size: tuple[int, int], device: torch.device) -> Tensor:
    """(R, 1, h, w) masks at ``size``, averaged by area from the full masks and summing to 1."""
    stacked = torch.stack([r.mask.float() for r in regions])[:, None].to(device)
    resized = F.interpolate(stacked, size=size, mode="area") if tuple(stacked.shape[-2:]) != size else stacked
    return resized / resized.sum(0, keepdim=True).clamp_min(1e-6)


def keep_mask(regions: Sequence[Region], masks: Tensor) -> Tensor | None:
    """(1, 1, h, w): the share of each pixel that stays the photo, feathered; None without keep regions."""
    kept = [i for i, r in enumerate(regions) if r.style is None]
    if not kept:
        return None
    keep = masks[kept].sum(0, keepdim=True)
    radius = min(FEATHER_PX, (min(keep.shape[-2:]) - 1) // 2)
    if radius > 0:
        keep = F.avg_pool2d(keep, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return keep.clamp(0, 1)


def at_positions(mask: Tensor, height: int, width: int) -> Tensor:
    """(1, 1, h, w) ``mask`` averaged by area onto a layer's (height, width) positions."""
    return mask if tuple(mask.shape[-2:]) == (height, width) else F.interpolate(mask, size=(height, width), mode="area")
