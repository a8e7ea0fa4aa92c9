"""Beyond the memory bound: a scale optimised in overlapping tiles, one after another.

Memory then follows the tile, not the output. Every tile is pulled toward the Gram targets of
the whole style image (a Gram matrix is an average over positions, so a tile of a well-stylized
image has about the same one), and toward the content features of its own patch of the
content. Tiles are optimised in raster order, each starting from the image as the tiles before
it left it, and blended back with linear ramps across the overlap, so there are no seams.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from nst_batch.core.errors import ConfigError

Box = tuple[int, int, int, int]  # top, left, height, width

# Context around a tile when computing Gram matrices in tiles: relu5_1's receptive field reaches
# about 100 px; a multiple of 16 keeps every tile's pooling grid aligned with the whole image's.
GRAM_HALO_PX = 96


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def tile_boxes(height: int, width: int, tile: int, overlap: int) -> list[Box]:
    """Boxes of at most ``tile`` px per side covering the image, neighbours overlapping by at
    least ``overlap`` px, spread evenly (the last ends at the border)."""
    if not 0 <= overlap < tile:
        raise ConfigError(f"the tile overlap must be in [0, tile), got {overlap} for tile {tile}")
    return [
        (top, left, min(tile, height), min(tile, width))
        for top in _starts(height, tile, overlap)
        for left in _starts(width, tile, overlap)
    ]


def feather(box: Box, height: int, width: int, overlap: int, device: torch.device | None = None) -> Tensor:
    """(1, 1, h, w) blend weights of a box: 1 inside, ramping down to 0 across the ``overlap``
    px at each side that borders another tile (not at the image's own borders)."""
    top, left, h, w = box

    def ramp(n: int, at_start: bool, at_end: bool) -> Tensor:
        weights = torch.ones(n, device=device)
        k = min(overlap, n // 2)
        if k > 0:
            edge = torch.arange(1, k + 1, dtype=torch.float32, device=device) / (k + 1)
            if not at_start:
                weights[:k] = edge
            if not at_end:
                weights[n - k :] = edge.flip(0)
        return weights

    rows = ramp(h, top == 0, top + h >= height)
    cols = ramp(w, left == 0, left + w >= width)
    return (rows[:, None] * cols[None, :])[None, None]


def optimise_in_tiles(
    image: Tensor,
    content: Tensor,
    boxes: list[Box],
    overlap: int,
    optimise_box: Callable[[int, Tensor, Tensor], Tensor],
) -> Tensor:
    """Run ``optimise_box(index, start_patch, content_patch) -> patch`` on each of ``boxes`` (from
    :func:`tile_boxes` with this ``overlap``) in turn and blend the patches back into a copy of ``image``."""
    out = image.detach().clone()
    height, width = image.shape[-2:]
    for index, box in enumerate(boxes):
        top, left, h, w = box
        region = (..., slice(top, top + h), slice(left, left + w))
        patch = optimise_box(index, out[region].clone(), content[region])
        weight = feather(box, height, width, overlap, image.device)
        out[region] = weight * patch + (1 - weight) * out[region]
    return out
