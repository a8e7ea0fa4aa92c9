"""Colour helpers for luminance-only transfer (Gatys et al. 2017, "Controlling Perceptual
Factors in Neural Style Transfer", section 5.1).

The paper uses YIQ: the stylizer optimises only Y, then puts back the content's I and Q.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nst_batch.core.errors import ShapeError

_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _apply(matrix: Tensor, image: Tensor) -> Tensor:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ShapeError(f"expected an image of shape (B, 3, H, W), got {tuple(image.shape)}")
    m = matrix.to(device=image.device, dtype=image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def rgb_to_yiq(image: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 3, H, W) YIQ; Y in [0, 1] for RGB in [0, 1]."""
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    """(B, 3, H, W) YIQ -> (B, 3, H, W) RGB (not clamped)."""
    return _apply(_YIQ_TO_RGB, image)


def luminance(image: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luminance Y."""
    return rgb_to_yiq(image)[:, :1]


def luminance_stats(image: Tensor) -> tuple[float, float]:
    """Mean and standard deviation of the luminance of an RGB image (B, 3, H, W)."""
    y = luminance(image.double())
    return float(y.mean()), float(y.std(unbiased=False))


def match_stats(y: Tensor, mean: float, std: float) -> Tensor:
    """Shift and scale luminance ``y`` (B, 1, H, W) to the given mean and std (the paper's
    "luminance histogram matching", first and second moments)."""
    own_std = y.std(unbiased=False).clamp_min(1e-6)
    return (y - y.mean()) * (std / own_std) + mean


def gray_to_rgb(y: Tensor) -> Tensor:
    """(B, 1, H, W) -> (B, 3, H, W) with R = G = B = y: how a luminance image enters VGG."""
    return y.expand(-1, 3, -1, -1)


def recombine(y: Tensor, content_rgb: Tensor) -> Tensor:
    """Optimised luminance ``y`` (B, 1, H, W) with the chroma (I, Q) of ``content_rgb``."""
    yiq = rgb_to_yiq(content_rgb)
    return yiq_to_rgb(torch.cat([y.to(yiq.dtype), yiq[:, 1:]], dim=1)).clamp(0, 1)
