"""Floating-point work of the VGG-19 convolutions, counted from the layer shapes."""

from __future__ import annotations

from nst_batch.core.vgg import LAYER_NAMES, conv_shapes


def conv_forward_flops(height: int, width: int, last_layer: str = "relu5_1") -> int:
    """Multiply-adds x 2 of every 3x3 convolution up to ``last_layer`` on an H x W input."""
    shapes = conv_shapes()
    flops, h, w = 0, height, width
    for name in LAYER_NAMES[: LAYER_NAMES.index(last_layer) + 1]:
        if name.startswith("conv"):
            out_ch, in_ch = shapes[name]
            flops += 2 * out_ch * in_ch * 9 * h * w
        elif name.startswith("pool"):
            h, w = h // 2, w // 2
    return flops


def evaluation_flops(height: int, width: int, last_layer: str = "relu5_1") -> int:
    """Convolution work of one evaluation: the forward pass, and the backward pass to the input
    (the same products transposed; no weight gradients, the weights are frozen)."""
    return 2 * conv_forward_flops(height, width, last_layer)
