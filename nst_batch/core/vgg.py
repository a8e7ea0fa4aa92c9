"""VGG-19 convolutional features that stop at the deepest layer a run needs.

The network takes images in [0, 1] RGB. Each weight source brings its own preprocessing
(:class:`Preprocessing`), applied inside :meth:`VGGFeatures.forward` so the optimised pixels stay
in [0, 1] whatever the weights expect, and switching sources is one option.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nst_batch.core.errors import ConfigError, ShapeError, WeightsError
from nst_batch.core.layers import CONV_NAMES, LAYER_NAMES, channels_of, conv_shapes, downsamplings

__all__ = [
    "CONV_NAMES",
    "LAYER_NAMES",
    "Preprocessing",
    "VGGFeatures",
    "VGGWeights",
    "channels_of",
    "conv_shapes",
    "downsamplings",
]


@dataclass(frozen=True)
class Preprocessing:
    """How the weights expect their input, from an image in [0, 1] RGB."""

    name: str
    bgr: bool  # reverse the channel order
    scale: float  # multiply [0, 1] by this first
    mean: tuple[float, float, float]  # subtracted after scaling, in the network's channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


# The original Caffe VGG-19: BGR, 0..255, minus the ImageNet mean pixel.
CAFFE = Preprocessing("caffe", bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68))
# torchvision's retrained VGG-19: RGB, [0, 1], normalised by the ImageNet mean and std.
TORCHVISION = Preprocessing("torchvision", bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
PREPROCESSINGS: dict[str, Preprocessing] = {p.name: p for p in (CAFFE, TORCHVISION)}


@dataclass(frozen=True)
class VGGWeights:
    """Convolution weights of VGG-19 and what they need to be used correctly.

    ``convs`` maps ``conv{b}_{c}`` to ``(weight (out, in, 3, 3), bias (out,))``. ``identity``
    names the source and its bytes (``caffe:sha256=...``) so that cached style targets computed
    with other weights are never mistaken for these.
    """

    convs: Mapping[str, tuple[Tensor, Tensor]]
    preprocessing: Preprocessing
    source: str
    sha256: str | None

    @property
    def identity(self) -> str:
        return f"{self.source}:{self.preprocessing.name}:sha256={self.sha256 or 'unknown'}"


class VGGFeatures(nn.Module):
    """VGG-19 truncated after ``last_layer``; ``forward`` returns the requested activations.

    Parameters are frozen: only the image is optimised, so no weight gradients are computed.
    """

    _pre_mul: Tensor  # buffers (registered in __init__): (1, 3, 1, 1) each
    _pre_add: Tensor

    def __init__(self, weights: VGGWeights, last_layer: str = "relu5_1", pooling: str = "max") -> None:
        super().__init__()
        if last_layer not in LAYER_NAMES:
            raise ConfigError(f"unknown VGG-19 layer {last_layer!r}", settings=["style_layers"])
        if pooling not in ("max", "avg"):
            raise ConfigError(f"pooling must be max or avg, got {pooling!r}", settings=["pooling"])
        self.preprocessing = weights.preprocessing
        self.identity = weights.identity
        self.channels_last = False  # see use_channels_last()
        self.pooling = pooling
        self.names = LAYER_NAMES[: LAYER_NAMES.index(last_layer) + 1]
        self.convs = nn.ModuleDict()
        shapes = conv_shapes()
        for name in self.names:
            if name.startswith("conv"):
                self.convs[name] = _make_conv(name, shapes[name], weights.convs)
        self.requires_grad_(False)
        pre = weights.preprocessing
        std = torch.tensor(pre.std).view(1, 3, 1, 1)
        # One affine map: x_net = x * scale / std - mean / std, in the network's channel order.
        self.register_buffer("_pre_mul", torch.full((1, 3, 1, 1), pre.scale) / std, persistent=False)
        self.register_buffer("_pre_add", -torch.tensor(pre.mean).view(1, 3, 1, 1) / std, persistent=False)

    def use_channels_last(self, enabled: bool = True) -> VGGFeatures:
        """Run the convolutions in NHWC (weights and activations); the outputs are the same values."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    @property
    def last_layer(self) -> str:
        return self.names[-1]

    def preprocess(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the network's input space."""
        if self.preprocessing.bgr:
            image = image.flip(1)
        return torch.addcmul(self._pre_add.to(image.dtype), image, self._pre_mul.to(image.dtype))

    def forward(self, image: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """Activations of ``layers`` for ``image`` (B, 3, H, W) RGB in [0, 1]."""
        wanted = set(layers)
        unknown = wanted.difference(self.names)
        if unknown:
            raise ShapeError(f"layers {sorted(unknown)} are beyond this network's last layer {self.last_layer}")
        if image.dim() != 4 or image.shape[1] != 3:
            raise ShapeError(f"expected an image of shape (B, 3, H, W), got {tuple(image.shape)}")
        if min(image.shape[-2:]) < 16 and any(n.startswith(("conv5", "relu5", "pool4", "pool5")) for n in wanted):
            raise ShapeError(f"image is {image.shape[-2]}x{image.shape[-1]} px; block 5 needs at least 16 px per side")
        deepest = max(self.names.index(n) for n in wanted)
        out: dict[str, Tensor] = {}
        x = self.preprocess(image)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for name in self.names[: deepest + 1]:
            x = self._run_layer(name, x, in_place=name.startswith("relu") and self._prev(name) not in wanted)
            if name in wanted:
                out[name] = x
        return out

    def _prev(self, name: str) -> str:
        return self.names[self.names.index(name) - 1]

    def _run_layer(self, name: str, x: Tensor, in_place: bool) -> Tensor:
        if name.startswith("conv"):
            return self.convs[name](x)
        if name.startswith("relu"):
            # In place when nobody reads the conv output: autograd's conv backward does not need it.
            return F.relu(x, inplace=in_place)
        if self.pooling == "avg":
            return F.avg_pool2d(x, 2, 2)
        return F.max_pool2d(x, 2, 2)


def _make_conv(name: str, shape: tuple[int, int], convs: Mapping[str, tuple[Tensor, Tensor]]) -> nn.Conv2d:
    if name not in convs:
        raise WeightsError(f"the weights have no {name}")
    weight, bias = convs[name]
    out_ch, in_ch = shape
    if tuple(weight.shape) != (out_ch, in_ch, 3, 3) or tuple(bias.shape) != (out_ch,):
        raise WeightsError(
            f"{name}: expected weight {(out_ch, in_ch, 3, 3)} and bias ({out_ch},), "
            f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(weight.float())
        conv.bias.copy_(bias.float())  # type: ignore[union-attr]  # bias=True: never None
    return conv
