"""Style targets: the Gram matrices (or, for ``style_loss: swd``, the quantile tables) of one style
image, computed on their own and serialisable.

``style targets = f(style image, sizes, layers, weights, pooling, precision, colour mode, loss)``.
The pipeline computes them once per style and reuses them across pairs and runs; a run given
precomputed targets produces the same image as one that computes them, because both go
through :func:`compute_style_targets`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from nst_batch.core.color import gray_to_rgb, luminance, luminance_stats, match_stats
from nst_batch.core.config import StyleConfig
from nst_batch.core.device import autocast, for_device
from nst_batch.core.errors import CorruptTargetsError, ShapeError, TargetsMismatchError
from nst_batch.core.image_ops import resize_max_side
from nst_batch.core.losses import SWD_SAMPLE, gram_matrix, quantile_table, style_projections, swd_directions
from nst_batch.core.tiles import GRAM_HALO_PX
from nst_batch.core.vgg import VGGFeatures, downsamplings

FORMAT_VERSION = 2  # 2: "tables" (Gram matrices or quantile tables) with the loss and seed in the spec


@dataclass(frozen=True)
class TargetSpec:
    """Everything besides the style image and its size that shapes its targets."""

    weights: str  # VGGWeights.identity: source, preprocessing and file sha256
    pooling: str
    layers: tuple[str, ...]
    precision: str
    color: str  # "rgb", or "luminance" for luminance-only transfer
    luminance_match: tuple[float, float] | None  # content luminance (mean, std) the style was matched to
    tile: int = 0  # style images larger than this are seen in tiles (StyleConfig.tile_size); 0 = whole
    loss: str = "gram"  # StyleConfig.style_loss: "gram" holds (C, C) Gram matrices, "swd" (C, Q) quantile tables
    seed: int = 0  # the seed the swd directions were drawn from; 0 for gram, which has none

    def describe(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class StyleTargets:
    """The targets of one style image: ``tables[side][layer]`` is a (C, C) Gram matrix (``gram``)
    or a (C, SWD_QUANTILES) table of quantiles along the run's directions (``swd``), float32,
    where ``side`` is the max side, px, the style image was resized to. Both are 2-D and blend
    as weighted sums (for quantiles, the 1-D Wasserstein barycentre along each direction)."""

    spec: TargetSpec
    tables: Mapping[int, Mapping[str, Tensor]]

    @property
    def sides(self) -> tuple[int, ...]:
        return tuple(sorted(self.tables))

    def to(self, device: torch.device) -> StyleTargets:
        moved = {side: {k: v.to(device) for k, v in layers.items()} for side, layers in self.tables.items()}
        return StyleTargets(self.spec, moved)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layers in self.tables.values() for t in layers.values())


def luminance_match_for(content: Tensor, cfg: StyleConfig) -> tuple[float, float] | None:
    """The content luminance statistics that style targets must be matched to, if any."""
    if cfg.preserve_color and cfg.match_luminance:
        mean, std = luminance_stats(content)
        return round(mean, 6), round(std, 6)  # rounded: a stable, printable part of a cache key
    return None


def target_spec(
    cfg: StyleConfig, features: VGGFeatures, luminance_match: tuple[float, float] | None = None
) -> TargetSpec:
    cfg = for_device(cfg, next(iter(features.parameters())).device, strict=False)
    return TargetSpec(
        weights=features.identity,
        pooling=features.pooling,
        layers=tuple(cfg.style_layers),
        precision=cfg.precision,
        tile=cfg.tile_size,
        color="luminance" if cfg.preserve_color else "rgb",
        luminance_match=luminance_match if cfg.preserve_color else None,
        loss=cfg.style_loss,
        seed=cfg.seed if cfg.style_loss == "swd" else 0,
    )


def compute_style_targets(
    style: Tensor,
    features: VGGFeatures,
    cfg: StyleConfig,
    *,
    sides: Iterable[int] | None = None,
    luminance_match: tuple[float, float] | None = None,
) -> StyleTargets:
    """Targets of ``style`` (1, 3, H, W) in [0, 1] at each of ``sides`` (default: the style sides of
    every scale of ``cfg``): Gram matrices, or quantile tables along the run's directions."""
    if style.dim() != 4 or style.shape[:2] != (1, 3):
        raise ShapeError(f"expected a style image of shape (1, 3, H, W), got {tuple(style.shape)}")
    cfg = for_device(cfg, style.device, strict=False)
    spec = target_spec(cfg, features, luminance_match)
    tables: dict[int, dict[str, Tensor]] = {}
    with torch.no_grad():
        for side in sorted(set(sides if sides is not None else cfg.style_sides())):
            image = _as_network_input(resize_max_side(style, side), spec)
            tables[side] = _tables(image, _forward(features, cfg.precision), spec)
    return StyleTargets(spec, tables)


def _forward(features: VGGFeatures, precision: str) -> Callable[[Tensor, tuple[str, ...]], dict[str, Tensor]]:
    """The network under the run's precision; Gram matrices are then taken outside autocast, in fp32."""

    def forward(image: Tensor, layers: tuple[str, ...]) -> dict[str, Tensor]:
        with autocast(image.device, precision):
            return features(image, layers)

    return forward


def _tables(
    image: Tensor, features: Callable[[Tensor, tuple[str, ...]], dict[str, Tensor]], spec: TargetSpec
) -> dict[str, Tensor]:
    layers, tile = spec.layers, spec.tile
    whole = not tile or max(image.shape[-2:]) <= tile
    if spec.loss == "gram":
        if whole:
            feats = features(image, layers)
            return {layer: gram_matrix(feats[layer])[0] for layer in layers}
        return _tiled_grams(image, features, layers, tile)
    samples = features(image, layers) if whole else _tiled_samples(image, features, layers, tile)
    return {
        layer: quantile_table(
            style_projections(samples[layer], swd_directions(samples[layer].shape[1], spec.seed, layer, image.device))
        )
        for layer in layers
    }


def _tiled_samples(
    image: Tensor, features: Callable[[Tensor, tuple[str, ...]], dict[str, Tensor]], layers: tuple[str, ...], tile: int
) -> dict[str, Tensor]:
    """Each layer's features of a large image as (1, C, 1, N): the tiles' core positions (see
    :func:`_tiled_grams`) at one regular stride, at most about SWD_SAMPLE of them, so memory follows the tile."""
    kept: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    height, width = image.shape[-2:]
    strides = {
        layer: -(-(height >> downsamplings(layer)) * (width >> downsamplings(layer)) // SWD_SAMPLE) for layer in layers
    }
    for layer, flat in _tile_cores(image, features, layers, tile):
        kept[layer].append(flat[:, :: strides[layer]])
    return {layer: torch.cat(parts, dim=1)[None, :, None, :] for layer, parts in kept.items()}


def _tiled_grams(
    image: Tensor, features: Callable[[Tensor, tuple[str, ...]], dict[str, Tensor]], layers: tuple[str, ...], tile: int
) -> dict[str, Tensor]:
    """Gram matrices of a large image from tiles: each tile's features are computed with
    GRAM_HALO_PX of context and only its core positions are summed, so memory follows the tile
    and the result is close to the whole image's (differences come from the halo's limited reach)."""
    sums: dict[str, Tensor] = {}
    positions = dict.fromkeys(layers, 0)
    for layer, flat in _tile_cores(image, features, layers, tile):
        sums[layer] = sums[layer] + flat @ flat.T if layer in sums else flat @ flat.T
        positions[layer] += flat.shape[1]
    return {layer: sums[layer] / (sums[layer].shape[0] * max(1, positions[layer])) for layer in layers}


def _tile_cores(
    image: Tensor, features: Callable[[Tensor, tuple[str, ...]], dict[str, Tensor]], layers: tuple[str, ...], tile: int
) -> Iterator[tuple[str, Tensor]]:
    """(layer, its (C, positions) float32 features at one tile's core), tile by tile: each tile's
    features are computed with GRAM_HALO_PX of context and only its core positions are kept."""
    height, width = image.shape[-2:]
    # Small tiles get a smaller halo: at least half of each tile is core, or the work explodes.
    halo = min(GRAM_HALO_PX, tile // 4 // 16 * 16)
    core = max(16, (tile - 2 * halo) // 16 * 16)
    for top in range(0, height, core):
        for left in range(0, width, core):
            t0, l0 = max(0, top - halo), max(0, left - halo)
            feats = features(
                image[..., t0 : min(height, top + core + halo), l0 : min(width, left + core + halo)], layers
            )
            for layer in layers:
                f = 2 ** downsamplings(layer)
                fh, fw = feats[layer].shape[-2:]
                y0, x0 = (top - t0) // f, (left - l0) // f
                y1 = fh if top + core >= height else y0 + core // f
                x1 = fw if left + core >= width else x0 + core // f
                yield layer, feats[layer][0, :, y0:y1, x0:x1].reshape(feats[layer].shape[1], -1).float()


def _as_network_input(style: Tensor, spec: TargetSpec) -> Tensor:
    if spec.color == "rgb":
        return style
    y = luminance(style)
    if spec.luminance_match is not None:
        y = match_stats(y, *spec.luminance_match)
    return gray_to_rgb(y)


def check_targets(targets: Sequence[StyleTargets], expected: TargetSpec, sides: Iterable[int]) -> None:
    """Raise :class:`TargetsMismatchError` unless every target fits this run."""
    needed = set(sides)
    for i, t in enumerate(targets):
        if t.spec != expected:
            diff = {k: (v, getattr(expected, k)) for k, v in t.spec.describe().items() if v != getattr(expected, k)}
            raise TargetsMismatchError(f"style targets #{i + 1} were computed with other settings (got, want): {diff}")
        missing = needed.difference(t.tables)
        if missing:
            raise TargetsMismatchError(
                f"style targets #{i + 1} lack style sizes {sorted(missing)} px (have {list(t.sides)})"
            )


def blend_targets(targets: Sequence[StyleTargets], weights: Sequence[float], side: int) -> dict[str, Tensor]:
    """Weighted sum of the styles' targets at one size: one loss against the averaged Gram (the blend
    of jcjohnson/neural-style, not one loss per style), or against the averaged quantiles (the
    Wasserstein barycentre of the styles' distributions along each direction)."""
    layers = targets[0].spec.layers
    return {layer: sum(w * t.tables[side][layer] for w, t in zip(weights, targets, strict=True)) for layer in layers}  # type: ignore[misc]


def targets_to_bytes(targets: StyleTargets) -> bytes:
    """Serialise for a cache: a ``torch.save`` of plain containers, loadable with weights_only."""
    payload = {
        "format": FORMAT_VERSION,
        "spec": {
            **targets.spec.describe(),
            "layers": list(targets.spec.layers),
            "luminance_match": list(targets.spec.luminance_match) if targets.spec.luminance_match else None,
        },
        "tables": {
            str(side): {k: v.detach().cpu().contiguous() for k, v in layers.items()}
            for side, layers in targets.tables.items()
        },
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def targets_from_bytes(data: bytes) -> StyleTargets:
    """Inverse of :func:`targets_to_bytes`; raises :class:`CorruptTargetsError` (a ``ValueError``)
    on anything malformed."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT_VERSION:
            raise CorruptTargetsError(f"unsupported style-target format {payload.get('format')!r}")
        raw = payload["spec"]
        match = raw["luminance_match"]
        spec = TargetSpec(
            weights=str(raw["weights"]),
            pooling=str(raw["pooling"]),
            layers=tuple(raw["layers"]),
            precision=str(raw["precision"]),
            color=str(raw["color"]),
            luminance_match=(float(match[0]), float(match[1])) if match else None,
            tile=int(raw.get("tile", 0)),
            loss=str(raw["loss"]),
            seed=int(raw["seed"]),
        )
        tables = {int(side): dict(layers) for side, layers in payload["tables"].items()}
    except CorruptTargetsError:
        raise
    except Exception as exc:  # unpickling errors, missing keys, wrong types: all mean "corrupt"
        raise CorruptTargetsError(f"corrupt style targets: {exc}") from exc
    for side, layers in tables.items():
        if set(layers) != set(spec.layers) or not all(isinstance(g, Tensor) and g.dim() == 2 for g in layers.values()):
            raise CorruptTargetsError(f"corrupt style targets at side {side}: layers {sorted(layers)}")
        if not all(bool(torch.isfinite(g).all()) for g in layers.values()):
            raise CorruptTargetsError(f"corrupt style targets at side {side}: non-finite values")
    return StyleTargets(spec, tables)
