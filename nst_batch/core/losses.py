"""The three loss terms of Gatys et al., as pure functions.

Normalisation (why the default weights work at any image size)
--------------------------------------------------------------
Every term is a *mean*, never a sum, so none grows with the number of pixels:

- content: ``mean((F - P)^2)`` over the C x H x W activations of the content layer;
- style: the Gram matrix is ``F F^T / (C H W)`` (for a stationary texture its entries are
  averages over positions, so they do not depend on the image size), and the layer loss is
  ``mean((G - A)^2)`` over the C x C entries;
- total variation: the mean squared difference between neighbouring pixels, in [0, 1] units.

Compared with the paper's ``E_l = sum((G_raw - A_raw)^2) / (4 N^2 M^2)`` (N = C, M = H W), our
layer loss is ``E_l * 4 / C^2``. This is the normalisation of jcjohnson/neural-style and of
Gatys' own PyTorch code (layer weights 1e3 / C^2 on ``G / (H W)``), which lets us use their
tested weights (content 5, style 100 on the original VGG-19 with Caffe preprocessing).
Gram matrices and losses are always computed in float32, even when features come out of a
bf16 autocast region: squared Gram differences of deep layers overflow half precision.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nst_batch.core.errors import ShapeError


def _at_least_fp32(t: Tensor) -> Tensor:
    """bf16/fp16 -> fp32; fp32 and fp64 unchanged (float64 keeps gradcheck exact)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def gram_matrix(features: Tensor) -> Tensor:
    """Normalised Gram matrix of feature maps.

    Args:
        features: (B, C, H, W).

    Returns:
        (B, C, C) in float32 (or float64 for float64 input), ``F F^T / (C H W)`` with F the features flattened to (B, C, H W).

    >>> gram_matrix(torch.ones(1, 2, 3, 3)).tolist()
    [[[0.5, 0.5], [0.5, 0.5]]]
    """
    if features.dim() != 4:
        raise ShapeError(f"expected features of shape (B, C, H, W), got {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = _at_least_fp32(features.reshape(b, c, h * w))
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between feature maps (B, C, H, W); returns a float32 scalar."""
    if features.shape != target.shape:
        raise ShapeError(f"content features {tuple(features.shape)} and target {tuple(target.shape)} differ")
    return torch.mean((_at_least_fp32(features) - _at_least_fp32(target)) ** 2)


def style_loss(gram: Tensor, target_gram: Tensor) -> Tensor:
    """Mean squared error between Gram matrices (B, C, C) and a target (C, C) or (B, C, C)."""
    if gram.shape[-2:] != target_gram.shape[-2:]:
        raise ShapeError(f"Gram {tuple(gram.shape)} and target {tuple(target_gram.shape)} differ")
    return torch.mean((gram - _at_least_fp32(target_gram)) ** 2)


class _GramStyleLoss(torch.autograd.Function):
    """``style_loss(gram_matrix(F), A)`` with a hand-written backward of one matrix product.

    Autograd differentiates ``F F^T`` with two products (one per factor) and then adds them.
    With ``L = mean((G - A)^2)`` the gradient is symmetric, so both are the same product:
    ``dL/dF = 2 (dL/dG) F / n``. On CPU the Gram products are ~10 % of an evaluation at 512 px;
    this removes a third of them.
    """

    @staticmethod
    def forward(ctx, features: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        b, c, h, w = features.shape
        flat = _at_least_fp32(features.reshape(b, c, h * w))
        n = c * h * w
        diff = torch.bmm(flat, flat.transpose(1, 2)).div_(n).sub_(_at_least_fp32(target))
        ctx.save_for_backward(flat, diff)
        ctx.n, ctx.in_dtype, ctx.shape = n, features.dtype, features.shape
        return diff.square().mean()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        flat, diff = ctx.saved_tensors
        # d mean((G - A)^2) / dG = 2 (G - A) / numel; then dG/dF contributes 2 sym(.) F / n.
        scale = grad_output * (4.0 / (diff.numel() * ctx.n))
        grad = torch.bmm(diff * scale, flat)
        return grad.reshape(ctx.shape).to(ctx.in_dtype), None


def gram_style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """``style_loss(gram_matrix(features), target_gram)`` for a symmetric target, faster to differentiate.

    Args:
        features: (B, C, H, W).
        target_gram: (C, C) or (B, C, C), symmetric (every Gram matrix is).
    """
    if features.dim() != 4:
        raise ShapeError(f"expected features of shape (B, C, H, W), got {tuple(features.shape)}")
    c = features.shape[1]
    if target_gram.shape[-2:] != (c, c):
        raise ShapeError(f"features have {c} channels but the target Gram is {tuple(target_gram.shape)}")
    return _GramStyleLoss.apply(features, target_gram.detach())


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference of vertically and horizontally adjacent pixels of (B, C, H, W).

    >>> float(total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])))
    1.0
    """
    if image.dim() != 4:
        raise ShapeError(f"expected an image of shape (B, C, H, W), got {tuple(image.shape)}")
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    zero = image.new_zeros(())
    vertical = torch.mean(_at_least_fp32(dy) ** 2) if dy.numel() else zero
    horizontal = torch.mean(_at_least_fp32(dx) ** 2) if dx.numel() else zero
    return vertical + horizontal
