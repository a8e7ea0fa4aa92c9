"""The stylizer: coarse-to-fine optimisation of the pixels (Gatys et al. 2016; 2017 for colour
control and the coarse-to-fine scheme)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from nst_batch.core.color import gray_to_rgb, luminance, recombine
from nst_batch.core.config import MIN_SIDE_PX, ScaleReport, StepInfo, StyleConfig, StylizeResult, WantsImages
from nst_batch.core.device import autocast, for_device
from nst_batch.core.errors import ConfigError, ShapeError
from nst_batch.core.image_ops import fit_size, resize, resize_unclamped
from nst_batch.core.losses import (
    content_loss,
    gram_style_loss,
    sliced_wasserstein_loss,
    swd_directions,
    total_variation,
)
from nst_batch.core.optimize import (
    GraphCache,
    IterationEvent,
    IterationHook,
    Objective,
    Reuse,
    ScaleOutcome,
    optimize_batch,
)
from nst_batch.core.precondition import Pyramid
from nst_batch.core.regions import Region, at_positions, check_regions, keep_mask, masks_at
from nst_batch.core.targets import (
    StyleTargets,
    blend_targets,
    check_targets,
    compute_style_targets,
    luminance_match_for,
    target_spec,
)
from nst_batch.core.tiles import Box, optimise_in_tiles, tile_boxes
from nst_batch.core.vgg import VGGFeatures

ProgressCallback = Callable[[StepInfo], None]
REPORT_EVERY = 10  # iterations between report points (losses read back from the device, previews)


def stylize(
    content: Tensor,
    features: VGGFeatures,
    cfg: StyleConfig,
    *,
    styles: Sequence[Tensor] = (),
    targets: Sequence[StyleTargets] = (),
    init_image: Tensor | None = None,
    regions: Sequence[Region] = (),
    on_step: ProgressCallback | None = None,
    report_every: int = REPORT_EVERY,
    graphs: GraphCache | None = None,
) -> StylizeResult:
    """Repaint ``content`` in the style of ``styles`` (or of precomputed ``targets``).

    Args:
        content: (1, 3, H, W) RGB in [0, 1]; resized so its longer side is ``cfg.size``.
        features: VGG-19 features reaching ``cfg``'s deepest layer, on ``content``'s device.
        cfg: the parameters.
        styles: style images, each (1, 3, H, W) RGB in [0, 1]. Give these or ``targets``.
        targets: precomputed :class:`StyleTargets`, one per style, from
            :func:`~nst_batch.core.targets.compute_style_targets` with the same ``cfg``.
        init_image: (1, 3, H, W) in [0, 1], required when ``cfg.init == "image"``.
        regions: styles by region (see :mod:`nst_batch.core.regions`): masks that partition the
            photo, each taking one of the styles, or keeping the photo. Empty: the whole image
            takes the styles (blended by ``cfg.style_blend``).
        on_step: receives a :class:`StepInfo` every iteration.
        report_every: read the loss terms back from the device every this many iterations.
        graphs: on CUDA, where each scale's graph is kept for the next photo (or batch) of this
            shape, and taken from if an earlier one kept it (see
            :class:`~nst_batch.core.optimize.GraphCache`). Not with regions.

    Returns:
        The image (1, 3, H', W') in [0, 1] with max(H', W') == cfg.size, and a report per scale.
    """
    _check_inputs(content, features, cfg, styles, targets, init_image)
    check_regions(regions, len(styles) or len(targets), (content.shape[-2], content.shape[-1]), cfg)
    cfg = for_device(cfg, content.device, strict=False)
    began = time.perf_counter()
    match = luminance_match_for(content, cfg)
    photo = _Photo(content, _targets(content, features, cfg, styles, targets, match), init_image, on_step)
    return _stylize([photo], features, cfg, regions, report_every, began, graphs)[0]


def stylize_batch(
    contents: Sequence[Tensor],
    features: VGGFeatures,
    cfg: StyleConfig,
    targets: Sequence[Sequence[StyleTargets]],
    *,
    init_images: Sequence[Tensor] = (),
    on_steps: Sequence[ProgressCallback | None] = (),
    report_every: int = REPORT_EVERY,
    graphs: GraphCache | None = None,
) -> list[StylizeResult]:
    """Several photos of one shape, each with its own styles, optimised as one batch: one pass of
    the network for all of them per evaluation, each photo with its own targets, L-BFGS history
    and early stop (see :mod:`nst_batch.core.optimize`). Each result is the photo's result alone,
    up to the floating-point order of a batched convolution.

    Args:
        contents: (1, 3, H, W) each, all of one H x W.
        targets: per photo, its styles' precomputed :class:`StyleTargets` (made with ``cfg`` and the
            photo's own luminance match, as :func:`stylize` takes them).
        init_images: per photo, when ``cfg.init == "image"``.
        on_steps: per photo, a progress callback or None.
        graphs: as :func:`stylize` takes it.

    Not batched (:class:`ConfigError`): tiles (a batch's tiles would not share boxes) and, in
    :func:`stylize` only, regions.
    """
    if (
        len(targets) != len(contents)
        or (on_steps and len(on_steps) != len(contents))
        or (init_images and len(init_images) != len(contents))
    ):
        raise ShapeError(
            f"{len(contents)} photos, {len(targets)} sets of targets, {len(on_steps)} callbacks and {len(init_images)} "
            "init images: give one of each per photo"
        )
    if not contents:
        return []
    shapes = {tuple(c.shape) for c in contents}
    if len(shapes) > 1:
        raise ShapeError(f"a batch's photos share one shape, got {sorted(shapes)}")
    for i, content in enumerate(contents):
        _check_inputs(content, features, cfg, (), targets[i], init_images[i] if init_images else None)
    height, width = contents[0].shape[-2:]
    if any(cfg.tiled(*fit_size(height, width, side)) for side in cfg.sides()):
        raise ConfigError(
            f"tile_size: a run in tiles ({cfg.tile_size} px) is not batched; stylize its photos one at a time",
            settings=["tile_size"],
        )
    cfg = for_device(cfg, contents[0].device, strict=False)
    began = time.perf_counter()
    photos = [
        _Photo(
            content,
            _targets(content, features, cfg, (), targets[i], luminance_match_for(content, cfg)),
            init_images[i] if init_images else None,
            on_steps[i] if on_steps else None,
        )
        for i, content in enumerate(contents)
    ]
    return _stylize(photos, features, cfg, (), report_every, began, graphs)


@dataclass(frozen=True)
class GraphShape:
    """What kept CUDA graphs are kept under (``optimize.Reuse.shape``): a batch of this many photos
    of this shape, dtype, device and settings (as the device settles them) runs in them."""

    photos: int
    height: int  # the photos' shape as given to the stylizer
    width: int
    dtype: torch.dtype
    device: str
    cfg: StyleConfig


@dataclass(frozen=True)
class _Photo:
    """One photo of a batch and what is its own: its styles' targets, its start, its progress."""

    content: Tensor  # (1, 3, H, W)
    targets: list[StyleTargets]
    init_image: Tensor | None
    on_step: ProgressCallback | None


def _stylize(
    photos: Sequence[_Photo],
    features: VGGFeatures,
    cfg: StyleConfig,
    regions: Sequence[Region],
    report_every: int,
    began: float,
    graphs: GraphCache | None = None,
) -> list[StylizeResult]:
    """The coarse-to-fine scales of a batch of photos of one shape (regions and tiles: one photo)."""
    content = torch.cat([p.content for p in photos])
    blends = [cfg.blend_weights(len(p.targets)) if not regions else () for p in photos]
    inits = [p.init_image for p in photos if p.init_image is not None]
    init = torch.cat(inits) if len(inits) == len(photos) else None
    height, width = content.shape[-2:]
    reports: list[list[ScaleReport]] = [[] for _ in photos]
    image: Tensor | None = None
    previous_content: Tensor | None = None
    iterations = cfg.iterations_per_scale()
    work = _work_per_scale(cfg, height, width)
    done_work = [0.0] * len(photos)  # pixel-iterations run in the scales before this one
    for index, (side, style_side) in enumerate(zip(cfg.sides(), cfg.style_sides(), strict=True)):
        size = fit_size(height, width, side)
        scale_rgb = resize(content, size)
        scale_content = _variable_space(scale_rgb, cfg)
        masks = masks_at(regions, size, content.device) if regions else None
        finish = _compositor(keep_mask(regions, masks) if masks is not None else None, scale_content)
        start = finish(_start_image(index, image, scale_content, size, cfg, init, previous_content))
        previous_content = scale_content
        grams = [
            _scale_targets(p.targets, blend, style_side, regions, masks)
            for p, blend in zip(photos, blends, strict=True)
        ]
        coarser = _batch_levels(cfg, index, side, photos, blends, (height, width), regions, masks)
        boxes = tile_boxes(*size, cfg.tile_size, cfg.tile_overlap) if cfg.tiled(*size) else []
        tiles = max(1, len(boxes))
        hooks = [
            _progress_hook(
                p.on_step,
                index,
                cfg.num_scales,
                size,
                iterations[index] * tiles,
                began,
                _previewer(finish, scale_rgb[i : i + 1], cfg),
                done_work[i],
                work[index],
                sum(work[index + 1 :]),
            )
            for i, p in enumerate(photos)
        ]
        where = f"scale {index + 1} ({size[1]}x{size[0]} px), "
        if tiles > 1:
            outcomes = [
                _optimize_tiled(
                    start,
                    scale_content,
                    boxes,
                    features,
                    cfg,
                    grams[0],
                    [(f, g[0], e) for f, g, e in coarser],
                    iterations[index],
                    _levels(cfg, index),
                    hooks[0],
                    report_every,
                    where,
                )
            ]
        else:
            objective, buffers = _batch_objective(features, cfg, scale_content, grams, coarser)
            outcomes = _optimize(
                start,
                _composed(objective, finish),
                cfg,
                iterations[index],
                _levels(cfg, index),
                on_iteration=_by_image(hooks),
                report_every=report_every,
                where=where,
                reuse=Reuse(
                    graphs,
                    GraphShape(len(photos), height, width, content.dtype, str(content.device), cfg),
                    index,
                    buffers,
                )
                if graphs is not None and not regions
                else None,
            )
        # L-BFGS runs unconstrained (clamping inside would break its curvature pairs); clamp
        # between scales and at the end instead.
        image = finish(torch.cat([o.image for o in outcomes])).clamp(0, 1)
        for i, outcome in enumerate(outcomes):
            done_work[i] += work[index] * outcome.iterations / max(1, iterations[index] * tiles)
            reports[i].append(
                ScaleReport(
                    size[0],
                    size[1],
                    outcome.iterations,
                    iterations[index] * tiles,
                    outcome.stopped_early,
                    outcome.losses,
                    outcome.seconds,
                    outcome.graphed,
                    outcome.capture_error,
                    outcome.graph_kept,
                )
            )
    assert image is not None
    if cfg.preserve_color:
        image = recombine(image, resize(content, (image.shape[-2], image.shape[-1])))
    return [StylizeResult(image=image[i : i + 1].detach(), scales=tuple(reports[i])) for i in range(len(photos))]


def _by_image(hooks: Sequence[IterationHook | None]) -> IterationHook | None:
    """One hook for the loop that passes each image's events to that image's hook."""
    if all(h is None for h in hooks):
        return None

    def hook(event: IterationEvent) -> None:
        own = hooks[event.index]
        if own is not None:
            own(event)

    return hook


def _optimize_tiled(
    start: Tensor,
    content: Tensor,
    boxes: list[Box],
    features: VGGFeatures,
    cfg: StyleConfig,
    grams: RegionTargets,
    coarser: Sequence[Level],
    iterations: int,
    levels: int,
    hook: IterationHook | None,
    report_every: int,
    where: str,
) -> ScaleOutcome:
    """One scale in tiles (see :mod:`nst_batch.core.tiles`); reported as one scale whose iterations are
    the tiles' iterations end to end."""
    began = time.perf_counter()
    outcomes: list[ScaleOutcome] = []

    def optimise_box(index: int, start_patch: Tensor, content_patch: Tensor) -> Tensor:
        offset = index * iterations

        def tile_hook(event: IterationEvent) -> None:
            if hook is not None and not event.scale_done:  # the scale is done after the last tile, below
                hook(IterationEvent(offset + event.iteration, event.losses))

        objective = build_objective(features, cfg, content_patch, grams, coarser)
        outcome = _optimize(
            start_patch,
            objective,
            cfg,
            iterations,
            levels,
            on_iteration=tile_hook,
            report_every=report_every,
            where=f"{where}tile {index + 1}/{len(boxes)}, ",
        )[0]
        outcomes.append(outcome)
        # Clamped per tile: the next tile's overlap starts from these pixels.
        return outcome.image.clamp(0, 1)

    image = optimise_in_tiles(start, content, boxes, cfg.tile_overlap, optimise_box)
    areas = [h * w for _, _, h, w in boxes]
    keys = set.intersection(*(set(o.losses) for o in outcomes)) if outcomes else set()
    losses = {k: sum(a * o.losses[k] for a, o in zip(areas, outcomes, strict=True)) / sum(areas) for k in sorted(keys)}
    done = sum(o.iterations for o in outcomes)
    stopped_early = all(o.stopped_early for o in outcomes)
    if hook is not None:
        hook(IterationEvent(done, losses, True, stopped_early, image))
    graphed = [o.graphed for o in outcomes if o.graphed is not None]
    errors = [o.capture_error for o in outcomes if o.capture_error]
    return ScaleOutcome(
        image,
        done,
        stopped_early,
        losses,
        time.perf_counter() - began,
        all(graphed) if graphed else None,
        errors[0] if errors else "",
    )


def _levels(cfg: StyleConfig, index: int) -> int:
    """The pyramid levels of scale ``index``: ``cfg.precondition`` at the first scale, where the
    strokes form; 0 (the pixels) at the finer ones, which refine an image that already has them.
    Measured (Tübingen, 256 -> 512 px, 150 + 30 iterations): the pyramid at 512 px too moved the
    coarse result's large areas in its first steps and left the output 10 % further from the
    content and 18 % short of the style at 256 px, against the pixels' refinement."""
    return cfg.precondition if index == 0 else 0


def _optimize(
    start: Tensor,
    objective: Objective,
    cfg: StyleConfig,
    iterations: int,
    levels: int,
    reuse: Reuse | None = None,
    **options: Any,
) -> list[ScaleOutcome]:
    """One scale's optimisation of a batch over the pixels, or over ``levels`` levels of their
    pyramid (see nst_batch.core.precondition)."""
    if levels <= 0:
        return optimize_batch(start, objective, cfg, iterations, reuse=reuse, **options)
    pyramid = Pyramid(start, levels)
    if reuse is not None:  # the variable starts at 0: the start is the pyramid's, and the batch's own
        reuse = replace(reuse, buffers=[*reuse.buffers, pyramid.start])
    return optimize_batch(
        pyramid.variable(), lambda z: objective(pyramid(z)), cfg, iterations, to_image=pyramid, reuse=reuse, **options
    )


def _check_inputs(
    content: Tensor,
    features: VGGFeatures,
    cfg: StyleConfig,
    styles: Sequence[Tensor],
    targets: Sequence[StyleTargets],
    init_image: Tensor | None,
) -> None:
    if content.dim() != 4 or content.shape[:2] != (1, 3):
        raise ShapeError(f"expected a content image of shape (1, 3, H, W), got {tuple(content.shape)}")
    if bool(styles) == bool(targets):
        raise ShapeError("give either style images or precomputed style targets, not both or neither")
    if cfg.init == "image" and init_image is None:
        raise ConfigError("init 'image' needs an init image (init_image)", settings=["init"])
    needed = cfg.layers[-1]
    if needed not in features.names:
        raise ShapeError(f"the VGG features stop at {features.last_layer}, but the losses need {needed}")
    if features.pooling != cfg.pooling:
        raise ShapeError(f"the VGG features use {features.pooling} pooling, the config asks for {cfg.pooling}")


def _targets(
    content: Tensor,
    features: VGGFeatures,
    cfg: StyleConfig,
    styles: Sequence[Tensor],
    targets: Sequence[StyleTargets],
    match: tuple[float, float] | None,
) -> list[StyleTargets]:
    if targets:
        check_targets(targets, target_spec(cfg, features, match), cfg.style_sides())
        return [t.to(content.device) for t in targets]
    return [compute_style_targets(s, features, cfg, luminance_match=match) for s in styles]


def _variable_space(rgb: Tensor, cfg: StyleConfig) -> Tensor:
    """The space the pixels are optimised in: RGB, or luminance only with preserve_color."""
    return luminance(rgb) if cfg.preserve_color else rgb


def _start_image(
    index: int,
    previous: Tensor | None,
    content: Tensor,
    size: tuple[int, int],
    cfg: StyleConfig,
    init_image: Tensor | None,
    previous_content: Tensor | None = None,
) -> Tensor:
    if previous is not None:
        if cfg.upsample == "residual" and previous_content is not None:
            # The content at this scale plus what the coarser scale changed, upsampled: the
            # stylization carries over, and the content's fine detail is not blurred away.
            return (content + resize_unclamped(previous - previous_content, size)).clamp(0, 1)
        return resize(previous, size)  # coarse-to-fine: continue from the upsampled result
    if cfg.init == "content":
        return content.clone()
    if cfg.init == "noise":
        # Drawn on the CPU from a seeded generator, then moved: the same noise on every device.
        # Each photo of a batch gets the noise it would get alone.
        generator = torch.Generator().manual_seed(cfg.seed)
        noise = torch.rand((1, *content.shape[1:]), generator=generator, dtype=torch.float32)
        return noise.expand(content.shape[0], -1, -1, -1).contiguous().to(content.device)
    assert init_image is not None
    return _variable_space(resize(init_image.to(content.device), size), cfg)


# The style terms of one size: (a region's mask at the scale's size, (1, 1, h, w), or None for the
# whole image; its targets by layer), one per styled region.
RegionTargets = list[tuple[Tensor | None, dict[str, Tensor]]]
# (this scale's full (h, w), the coarser scale's exact (h, w)): an image of the first size is
# downscaled to the second, not by the rounded factor.
Exact = tuple[tuple[int, int], tuple[int, int]]
# (the downscale factor, the targets at that size, and the Exact sizes, or None)
Level = tuple[float, RegionTargets, Exact | None]
# The same for a batch: the targets at that size per photo.
BatchLevel = tuple[float, list[RegionTargets], Exact | None]
# A batch of images -> (content loss, style loss), unweighted, (B,) each, at one level.
LevelLoss = Callable[[Tensor], tuple[Tensor, Tensor]]


def _scale_targets(
    targets: Sequence[StyleTargets],
    blend: Sequence[float],
    style_side: int,
    regions: Sequence[Region] = (),
    masks: Tensor | None = None,
) -> RegionTargets:
    """The whole image against the blend of the styles, or each styled region against its own style."""
    if not regions or masks is None:
        return [(None, blend_targets(targets, blend, style_side))]
    return [
        (masks[i : i + 1], dict(targets[r.style].tables[style_side]))
        for i, r in enumerate(regions)
        if r.style is not None
    ]


def _compositor(keep: Tensor | None, content: Tensor) -> Callable[[Tensor], Tensor]:
    """x -> the photo where it is kept (see nst_batch.core.regions), x elsewhere."""
    if keep is None:
        return lambda x: x
    return lambda x: torch.lerp(x, content, keep)


def _batch_levels(
    cfg: StyleConfig,
    index: int,
    side: int,
    photos: Sequence[_Photo],
    blends: Sequence[Sequence[float]],
    content_hw: tuple[int, int],
    regions: Sequence[Region] = (),
    masks: Tensor | None = None,
) -> list[BatchLevel]:
    """:func:`_coarser_levels` of each photo of a batch, the targets gathered per level."""
    each = [
        _coarser_levels(cfg, index, side, p.targets, blend, content_hw, regions, masks)
        for p, blend in zip(photos, blends, strict=True)
    ]
    return [(f, [levels[j][1] for levels in each], exact) for j, (f, _, exact) in enumerate(each[0])]


def _coarser_levels(
    cfg: StyleConfig,
    index: int,
    side: int,
    targets: Sequence[StyleTargets],
    blend: Sequence[float],
    content_hw: tuple[int, int] | None = None,
    regions: Sequence[Region] = (),
    masks: Tensor | None = None,
) -> list[Level]:
    """The coarser scales' Gram targets, each with the factor that downscales this scale to it. With
    the content's size, the whole image is downscaled to exactly the size that scale ran at: the
    factor alone can round 1 px off it, and on a GPU each new shape costs cuDNN another tuning."""
    if cfg.coarse_style_share <= 0:
        return []
    sides, style_sides = cfg.sides(), cfg.style_sides()
    here = fit_size(*content_hw, side) if content_hw else None
    return [
        (
            sides[j] / side,
            _scale_targets(targets, blend, style_sides[j], regions, masks),
            (here, fit_size(*content_hw, sides[j])) if content_hw and here else None,
        )
        for j in range(index)
    ]


def build_objective(
    features: VGGFeatures,
    cfg: StyleConfig,
    content: Tensor,
    style_grams: Mapping[str, Tensor] | RegionTargets,
    coarser: Sequence[Level] = (),
) -> Objective:
    """:func:`batch_objective` of one photo (``content`` (1, C, H, W)). ``style_grams``: the whole
    image's targets by layer, or :data:`RegionTargets` (a style term per region)."""
    if isinstance(style_grams, Mapping):
        style_grams = [(None, dict(style_grams))]
    return batch_objective(features, cfg, content, [style_grams], [(f, [g], exact) for f, g, exact in coarser])


def batch_objective(
    features: VGGFeatures,
    cfg: StyleConfig,
    content: Tensor,
    style_targets: Sequence[RegionTargets],
    coarser: Sequence[BatchLevel] = (),
) -> Objective:
    """The loss of Gatys et al. of each photo of a batch (``content`` (B, C, H, W), ``style_targets``
    one per photo): content at ``cfg.content_layers``, Gram matrices (or quantiles) at the style
    layers, total variation. With ``coarser`` levels, ``cfg.coarse_style_share`` of the content
    and style terms is the same loss on the image downscaled to each of them, against the content
    and the Gram targets at that size (see ``StyleConfig.coarse_style_share``). The objective
    returns each photo's total and terms, (B,) each."""
    return _batch_objective(features, cfg, content, style_targets, coarser)[0]


def _batch_objective(
    features: VGGFeatures,
    cfg: StyleConfig,
    content: Tensor,
    style_targets: Sequence[RegionTargets],
    coarser: Sequence[BatchLevel] = (),
) -> tuple[Objective, list[Tensor]]:
    """:func:`batch_objective`, and the tensors it reads that are the batch's own (optimize.Reuse)."""
    levels = [
        (f, g, exact) for f, g, exact in coarser if min(content.shape[-2:]) * f >= MIN_SIDE_PX
    ]  # VGG-19 needs 16 px
    own = 1.0 - cfg.coarse_style_share if levels else 1.0
    built: list[tuple[float, float, Exact | None, tuple[LevelLoss, list[Tensor]]]] = [
        (own, 1.0, None, _level_loss(features, cfg, content, style_targets))
    ]
    built += [
        ((1.0 - own) / len(levels), f, exact, _level_loss(features, cfg, _downscale(content, f, exact), g))
        for f, g, exact in levels
    ]
    terms_at: list[tuple[float, float, Exact | None, LevelLoss]] = [(w, f, e, loss) for w, f, e, (loss, _) in built]
    buffers = [tensor for *_, (_, level_buffers) in built for tensor in level_buffers]

    def objective(x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c: Tensor | float = 0.0
        s: Tensor | float = 0.0
        for weight, factor, exact, loss in terms_at:
            lc, ls = loss(x if factor == 1.0 else _downscale(x, factor, exact))
            c, s = c + weight * lc, s + weight * ls
        terms = {"content": cfg.content_weight * c, "style": cfg.style_weight * s}
        if cfg.tv_weight > 0:
            terms["tv"] = cfg.tv_weight * torch.stack([total_variation(x[i : i + 1]) for i in range(x.shape[0])])
        total = sum(terms.values())
        return total, {k: v.detach() for k, v in terms.items()}  # type: ignore[return-value, union-attr]

    return objective, buffers


def scale_objective(
    content: Tensor, features: VGGFeatures, cfg: StyleConfig, targets: Sequence[StyleTargets], index: int = -1
) -> tuple[Tensor, Objective]:
    """The content at scale ``index`` (default: the output size) of a run of ``cfg``, and the
    objective the loop minimises there: to judge any image of that size by the run's own loss
    (the benchmarks compare a bf16 run's output with an fp32 run's in fp32 this way)."""
    cfg = for_device(cfg, content.device, strict=False)
    sides = cfg.sides()
    index = index % len(sides)
    blend = cfg.blend_weights(len(targets))
    height, width = content.shape[-2], content.shape[-1]
    scale_content = _variable_space(resize(content, fit_size(height, width, sides[index])), cfg)
    grams = blend_targets(targets, blend, cfg.style_sides()[index])
    coarser = _coarser_levels(cfg, index, sides[index], targets, blend, (height, width))
    return scale_content, build_objective(features, cfg, scale_content, grams, coarser)


def _downscale(x: Tensor, factor: float, exact: Exact | None = None) -> Tensor:
    """``x`` downscaled by ``factor``; to the coarser scale's own size when ``x`` is the whole image
    (a tile has no such size: it scales by the factor)."""
    if exact is not None and tuple(x.shape[-2:]) == exact[0]:
        return resize_unclamped(x, exact[1])
    return resize_unclamped(x, (max(1, round(x.shape[-2] * factor)), max(1, round(x.shape[-1] * factor))))


def _level_loss(
    features: VGGFeatures, cfg: StyleConfig, content: Tensor, style_targets: Sequence[RegionTargets]
) -> tuple[LevelLoss, list[Tensor]]:
    """(content loss, style loss), unweighted, (B,) each, of a batch the size of ``content``: the
    network sees the whole batch at once, each photo's losses are taken on its own features. With
    the tensors it reads that are the batch's own (its content features, its targets)."""
    layers, layer_weights = cfg.layers, cfg.layer_weights()
    with torch.no_grad(), autocast(content.device, cfg.precision):
        content_targets = {k: v.detach() for k, v in features(_rgb(content, cfg), cfg.content_layers).items()}
    style_term = _style_term(cfg, content.device)
    # The targets' own copies (a few MB): a reused CUDA graph's next batch is written into them,
    # and the tables given may be a cache's, shared with other pairs.
    photos = [
        [
            (
                None if mask is None else at_positions(mask, *content.shape[-2:]),
                {k: tables[k].clone() for k in sorted(tables)},
            )
            for mask, tables in targets
        ]
        for targets in style_targets
    ]
    masked = [_MaskedTerms(cfg, style_term) for _ in photos]
    # What is the batch's own, for a kept graph (optimize.Reuse). Not the regions' masks: a masked
    # term keeps numbers worked out from its mask, so runs with regions keep no graph.
    buffers = [content_targets[k] for k in sorted(content_targets)]
    buffers += [table for terms in photos for _, tables in terms for table in tables.values()]

    def loss(x: Tensor) -> tuple[Tensor, Tensor]:
        with autocast(x.device, cfg.precision):
            feats = features(_rgb(x, cfg), layers)
        zero = x.new_zeros((), dtype=torch.float32)
        c, s = [], []
        for p, terms in enumerate(photos):
            own = {k: v[p : p + 1] for k, v in feats.items()}
            c.append(
                sum((content_loss(own[k], content_targets[k][p : p + 1]) for k in cfg.content_layers), zero)
                / len(cfg.content_layers)
            )
            s.append(
                sum(
                    (
                        layer_weights[k]
                        * (
                            style_term(own[k], tables[k], k)
                            if mask is None
                            else masked[p](i, mask, own[k], tables[k], k)
                        )
                        for i, (mask, tables) in enumerate(terms)
                        for k in cfg.style_layers
                    ),
                    zero,
                )
            )
        return torch.stack(c), torch.stack(s)

    return loss, buffers


class _MaskedTerms:
    """One region's style term at one layer (see nst_batch.core.regions); what depends only on the
    mask and the layer's shape (the mask at its positions, the region's share) is worked out at
    the first evaluation and kept."""

    def __init__(self, cfg: StyleConfig, style_term: Callable[[Tensor, Tensor, str], Tensor]) -> None:
        self.swd = cfg.style_loss == "swd"
        self.style_term = style_term
        self._prepared: dict[tuple[int, str], tuple[Tensor, float, float]] = {}

    def __call__(self, region: int, mask: Tensor, feats: Tensor, table: Tensor, layer: str) -> Tensor:
        key = (region, layer)
        if key not in self._prepared:
            m = at_positions(mask, *feats.shape[-2:])
            if self.swd:
                self._prepared[key] = ((m.flatten() >= 0.5).nonzero().flatten(), 0.0, 0.0)
            else:
                self._prepared[key] = (m, float(m.mean()), float(m.square().mean()))
        prepared, share, energy = self._prepared[key]
        if self.swd:
            count = prepared.numel()
            if count == 0:  # a small region has no whole position at a deep layer
                return feats.new_zeros((), dtype=torch.float32)
            inside = feats.flatten(2)[:, :, prepared][:, :, None, :]
            return self.style_term(inside, table, layer) * (count / (feats.shape[-2] * feats.shape[-1]))
        if share <= 0:
            return feats.new_zeros((), dtype=torch.float32)
        # F m / sqrt(mean m^2): its Gram, F F^T / (C H W), is the masked Gram (F m)(F m)^T / (C sum m^2).
        return self.style_term(feats * (prepared * energy**-0.5), table, layer) * share


def _style_term(cfg: StyleConfig, device: torch.device) -> Callable[[Tensor, Tensor, str], Tensor]:
    """One style layer's loss, unweighted: features against that layer's target (a Gram matrix, or
    quantiles along the run's fixed directions)."""
    if cfg.style_loss == "gram":
        return lambda feats, target, layer: gram_style_loss(feats, target)

    on_device: dict[str, Tensor] = {}  # moved once, at the first evaluation: never inside a CUDA graph's capture

    def swd(feats: Tensor, table: Tensor, layer: str) -> Tensor:
        if layer not in on_device:
            on_device[layer] = swd_directions(feats.shape[1], cfg.seed, layer, device)
        return sliced_wasserstein_loss(feats, on_device[layer], table)

    return swd


def _rgb(x: Tensor, cfg: StyleConfig) -> Tensor:
    return gray_to_rgb(x) if cfg.preserve_color else x


def _previewer(finish: Callable[[Tensor], Tensor], content_rgb: Tensor, cfg: StyleConfig) -> Callable[[Tensor], Tensor]:
    """best iterate -> the picture it makes, RGB in [0, 1] (a copy: the optimiser keeps its buffer)."""

    def preview(best: Tensor) -> Tensor:
        image = finish(best).clamp(0, 1)
        return recombine(image, content_rgb) if cfg.preserve_color else image

    return preview


def _composed(objective: Objective, finish: Callable[[Tensor], Tensor]) -> Objective:
    """The objective of the picture an iterate makes (the photo put back where a region keeps it)."""
    return lambda x: objective(finish(x))


def _work_per_scale(cfg: StyleConfig, height: int, width: int) -> list[float]:
    """Planned work of each scale, in pixel-iterations: an iteration costs about the same per
    pixel at every size, so this is what an ETA must weigh (a 512-px scale's iteration is ~4x a
    256-px one's)."""
    work = []
    for side, iterations in zip(cfg.sides(), cfg.iterations_per_scale(), strict=True):
        h, w = fit_size(height, width, side)
        work.append(float(h * w * iterations))
    return work


def _progress_hook(
    on_step: ProgressCallback | None,
    index: int,
    num_scales: int,
    size: tuple[int, int],
    max_iterations: int,
    began: float,
    preview: Callable[[Tensor], Tensor],
    done_before: float,
    scale_work: float,
    later_work: float,
) -> IterationHook | None:
    if on_step is None:
        return None
    per_iteration = scale_work / max(1, max_iterations)

    def hook(event: IterationEvent) -> None:
        # The elapsed time is taken before the preview is made, so previews do not count as work.
        elapsed = time.perf_counter() - began
        image = preview(event.image) if event.image is not None and _wants_images(on_step) else None
        left = later_work + (0.0 if event.scale_done else per_iteration * (max_iterations - event.iteration))
        on_step(
            StepInfo(
                index,
                num_scales,
                size[0],
                size[1],
                event.iteration,
                max_iterations,
                elapsed,
                event.losses,
                event.scale_done,
                event.stopped_early,
                image,
                done_before + per_iteration * event.iteration,
                left,
            )
        )

    return hook


def _wants_images(on_step: ProgressCallback) -> bool:
    """Previews cost a copy of the image: given to the callbacks that ask (WantsImages)."""
    return isinstance(on_step, WantsImages)
