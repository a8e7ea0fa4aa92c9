"""Pure tensor image operations: sizes and resampling. No file I/O here."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nst_batch.core.errors import ShapeError


def image_hw(image: Tensor) -> tuple[int, int]:
    """(height, width) of an image (..., H, W): a pair of ints, which ``shape[-2:]`` is not to a type checker."""
    return image.shape[-2], image.shape[-1]


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) scaled so the longer side is ``max_side``, keeping the aspect ratio."""
    if height <= 0 or width <= 0:
        raise ShapeError(f"image size must be positive, got {height}x{width}")
    ratio = max_side / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of (B, C, H, W) in [0, 1] to ``size`` = (H', W'), clamped to [0, 1].

    Antialiased, so downscaling a photo does not alias fine detail into the optimisation.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 1)


def resize_unclamped(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of a signed (B, C, H, W) tensor, e.g. a difference of images."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)


def resize_max_side(image: Tensor, max_side: int) -> Tensor:
    """Resize (B, C, H, W) so that its longer side is ``max_side``."""
    return resize(image, fit_size(image.shape[-2], image.shape[-1], max_side))
