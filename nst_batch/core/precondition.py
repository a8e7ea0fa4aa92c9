"""The image's parameterisation: pixels as the paper optimises them, or a pyramid that
preconditions L-BFGS.

A departure from the paper (after Mordvintsev et al. 2018, "Differentiable Image
Parameterizations", and STROTSS's pyramid, Kolkin et al. 2019): the optimised variable ``z`` has
the image's shape, and the image is

    x = start + z + sum_k gain^k * up(avgpool_{2^k}(z)),   k = 1..levels

``z = 0`` is the start. The map is linear, so L-BFGS over ``z`` is L-BFGS over the pixels with the
initial inverse Hessian ``P P^T``: a component of the gradient that is smooth over 2^k px is
amplified by about ``(sum_{j<=k} gain^j)^2``, a pixel-level one not at all. On pixels, the
curvature of VGG's loss is dominated by fine detail (the first layers are edge filters), so the
large strokes of a painting form last, through hundreds of small steps; an L-BFGS history of 50
pairs cannot learn a curvature that spans the whole spectrum. With the pyramid the strokes form in
a fraction of the iterations (measured: docs/how-it-works.md, "Fewer evaluations").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

PYRAMID_GAIN = 2.0


class Pyramid:
    """``z -> start + P z`` (see the module's docstring) for images of ``start``'s shape."""

    def __init__(self, start: Tensor, levels: int, gain: float = PYRAMID_GAIN) -> None:
        self.start = start.detach()
        height, width = start.shape[-2:]
        # Levels coarser than one pixel add nothing: they are left out.
        self.sizes = [
            (height // 2**k, width // 2**k) for k in range(1, levels + 1) if height // 2**k >= 1 and width // 2**k >= 1
        ]
        self.gain = gain

    def variable(self) -> Tensor:
        """The variable's starting point (the start image itself)."""
        return self.start.new_zeros(self.start.shape)

    def __call__(self, z: Tensor) -> Tensor:
        out = self.start + z
        size = z.shape[-2:]
        for k, coarse in enumerate(self.sizes, start=1):
            out = out + self.gain**k * F.interpolate(
                F.adaptive_avg_pool2d(z, coarse), size=size, mode="bilinear", align_corners=False
            )
        return out
