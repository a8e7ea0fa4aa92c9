"""A pair's pixels from its bytes: decoded, its style targets (through
nst_batch.tasks.pair.target_cache), the optimisation on a device of the pool, one image or a batch
of one shape at once, its quality measured. Nothing here writes: ``pipeline`` writes what this
makes, and ``nst stylize`` (``stylize_files``) is a one-pair job of :func:`produce_image`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nst_batch.core import (
    GraphCache,
    ProgressCallback,
    StyleConfig,
    StylizeResult,
    VGGFeatures,
    compute_style_targets,
    configure_backends,
    for_device,
    luminance_match_for,
    stylize,
    stylize_batch,
)
from nst_batch.core.image_ops import fit_size, image_hw, resize
from nst_batch.core.regions import check_regions
from nst_batch.core.stylizer import REPORT_EVERY, GraphShape
from nst_batch.tasks.errors import TaskError
from nst_batch.tasks.pair.device_pool import device_pool
from nst_batch.tasks.pair.done import shares_targets
from nst_batch.tasks.pair.image_files import LoadedImage, check_aspect, decode_image
from nst_batch.tasks.pair.kept_graphs import counted_free
from nst_batch.tasks.pair.masks import MaskInput
from nst_batch.tasks.pair.memory_guard import check_fits
from nst_batch.tasks.pair.networks import get_features
from nst_batch.tasks.pair.target_cache import RESIDENT, TargetCache, TargetsOutcome, features_for
from nst_batch.tasks.pair.threads import use_threads
from nst_batch.tasks.planning.buckets import bucket_shape
from nst_batch.tasks.planning.runtime import RuntimeOptions

if TYPE_CHECKING:  # PyTorch itself is imported by the core, where a pair runs
    import torch
    from torch import Tensor


class Timings(dict[str, float]):
    """Seconds per phase of a pair: where its time goes besides the optimisation (decoding, the
    memory guard and style targets, encoding and writing), recorded in its sidecar."""

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self[phase] = round(self.get(phase, 0.0) + time.perf_counter() - began, 4)


@dataclass
class Produced:
    """One stylized image and what made it."""

    image: Tensor  # (1, 3, H, W) on the CPU
    content: LoadedImage
    result: StylizeResult
    cfg: StyleConfig  # settled for the device it ran on
    device: torch.device
    outcomes: list[TargetsOutcome]  # per style: its targets, from the cache or computed
    timings: Timings
    # The judge's figures (nst_batch.core.quality) at the output's size and at gallery scale:
    # {"512": {"content": .., "style_gain": ..}, "256": {...}}; empty if they could not be measured.
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    batch: int = 1  # the photos optimised with it as one batch, itself included


@dataclass(frozen=True)
class ImageJob:
    """One image for :func:`produce_images`: its photo, its styles, and what is its own."""

    content_uri: str
    content_bytes: bytes
    styles: Sequence[tuple[str, bytes]]  # (URI, bytes) of each
    init: tuple[str, bytes] | None = None  # (URI, bytes) of the image to start from (init: image)
    on_step: ProgressCallback | None = None
    on_decoded: Callable[[LoadedImage], None] | None = None
    mask: MaskInput | None = None
    # The photo decoded already (by the pipeline's read-ahead, see pipeline.decodes_ahead), and the
    # seconds that took: its pair's "decode" time, though the device did not wait for it.
    decoded: LoadedImage | None = None
    decode_s: float = 0.0


def produce_image(
    content_uri: str,
    content_bytes: bytes,
    styles: Sequence[tuple[str, bytes]],
    cfg: StyleConfig,
    runtime: RuntimeOptions,
    *,
    targets: TargetCache | None = None,
    force: bool = False,
    init: tuple[str, bytes] | None = None,
    on_step: ProgressCallback | None = None,
    report_every: int = REPORT_EVERY,
    on_decoded: Callable[[LoadedImage], None] | None = None,
    mask: MaskInput | None = None,
) -> Produced:
    """:func:`produce_images` of one image."""
    job = ImageJob(content_uri, content_bytes, styles, init, on_step, on_decoded, mask)
    return produce_images([job], cfg, runtime, targets=targets, force=force, report_every=report_every)[0]


@dataclass
class _Decoded:
    content: LoadedImage
    styles: list[LoadedImage]  # decoded here only without the cache
    start: LoadedImage | None
    regions: list[Any]


def produce_images(
    jobs: Sequence[ImageJob],
    cfg: StyleConfig,
    runtime: RuntimeOptions,
    *,
    targets: TargetCache | None = None,
    force: bool = False,
    report_every: int = REPORT_EVERY,
    graphs: GraphCache | None = None,
) -> list[Produced]:
    """The one path from pairs' bytes to their images, for ``nst stylize`` and every runner: decode,
    the memory guard, a device, the style targets (through ``targets``, the cache under an output
    root, or computed here without one), the optimisation; several jobs are one batch (their
    photos brought to their common bucket's shape, and their outputs back to their own), and
    the time of what they share (the device's set-up, the optimisation) is split among them.
    ``graphs`` keeps each scale's CUDA graph for the next call with a batch of this shape (see
    nst_batch.tasks.pair.kept_graphs); without it, the graphs go with this call."""
    timings = [Timings() for _ in jobs]
    decoded = [_decode(job, cfg, runtime, targets is not None, t) for job, t in zip(jobs, timings, strict=True)]
    shape = _batch_shape(decoded, cfg) if len(jobs) > 1 else None
    # The guard counts the style images where they are decoded here; cached targets need none.
    styles = [s for d in decoded for s in d.styles]
    style_pixels = (
        max(math.prod(fit_size(*image_hw(s.rgb), max(cfg.style_sides()))) for s in styles) if styles else None
    )
    shared = Timings()
    with device_pool(runtime.device).acquire_slot() as slot:
        device = slot.device
        # Per pair, not per process: a Dask worker runs pairs of manifests with other settings.
        use_threads(runtime.threads)
        with shared("setup"):
            cfg = for_device(cfg, device)
            height, width = shape or decoded[0].content.rgb.shape[-2:]
            graphs = graphs if graphs is not None else GraphCache()
            check_fits(
                cfg,
                height,
                width,
                device,
                jobs[0].content_uri,
                style_pixels,
                sharing=slot.sharing,
                batch=len(jobs),
                held=counted_free(
                    graphs, GraphShape(len(jobs), height, width, decoded[0].content.rgb.dtype, str(device), cfg), device
                ),
            )
            features = features_for(cfg, runtime, device)
            configure_backends(device, runtime.deterministic)
        outcomes = []
        for job, d, t in zip(jobs, decoded, timings, strict=True):
            with t("setup"):
                outcomes.append(_style_targets(job, d, features, cfg, runtime, targets, force, device))
        with shared("stylize"):
            results = _optimise(jobs, decoded, outcomes, features, cfg, shape, device, report_every, graphs)
            images = [r.image.cpu() for r in results]  # waits for the GPU: the optimisation's time, not the encoder's
        made = []
        for job, d, t, o, r, image in zip(jobs, decoded, timings, outcomes, results, images, strict=True):
            for phase, seconds in shared.items():
                t[phase] = round(t.get(phase, 0.0) + seconds / len(jobs), 4)
            with t("quality"):
                # The judge compares the whole output with the whole painting (or blend): with regions
                # of several styles or kept, that says nothing true, so it is not said.
                quality = measure_quality(r.image, d.content, job.styles, cfg, runtime, device) if not d.regions else {}
            made.append(Produced(image, d.content, r, cfg, device, o, t, quality, batch=len(jobs)))
    return made


def decode_content(data: bytes, uri: str, cfg: StyleConfig, runtime: RuntimeOptions) -> LoadedImage:
    """A pair's photo as the optimisation takes it (at most ``size`` px, JPEGs decoded at a reduced
    DCT scale where that is exact enough): the one decode of a photo, wherever it runs."""
    return decode_image(data, uri, max_pixels=runtime.max_pixels, max_side=cfg.size)


def _decode(job: ImageJob, cfg: StyleConfig, runtime: RuntimeOptions, cached: bool, timings: Timings) -> _Decoded:
    if job.decoded is not None:
        timings["decode"] = round(job.decode_s, 4)
    with timings("decode"):
        content = (
            job.decoded if job.decoded is not None else decode_content(job.content_bytes, job.content_uri, cfg, runtime)
        )
        check_aspect(content, cfg, job.content_uri)
        styles = [] if cached else [_decoded_style(uri, data, cfg, runtime) for uri, data in job.styles]
        start = (
            decode_image(job.init[1], job.init[0], max_pixels=runtime.max_pixels, max_side=cfg.size)
            if job.init is not None
            else None
        )
    if job.on_decoded is not None:
        job.on_decoded(content)  # nst stylize's checkpoints encode with the content's alpha
    regions = job.mask.regions() if job.mask is not None else []
    if regions:  # a mask that cannot be run fails here, before the guard, a device and the style targets
        check_regions(regions, len(job.styles), (content.rgb.shape[-2], content.rgb.shape[-1]), cfg)
    return _Decoded(content, styles, start, regions)


def _batch_shape(decoded: Sequence[_Decoded], cfg: StyleConfig) -> tuple[int, int]:
    """The bucket shape of a batch's photos (the caller groups them: see :func:`batches`)."""
    shapes = {bucket_shape(*image_hw(d.content.rgb), cfg.size) for d in decoded}
    if len(shapes) != 1 or any(d.regions or d.start is not None for d in decoded):
        raise TaskError(
            f"a batch holds photos of one bucket, without masks or start images; got buckets {sorted(shapes)}"
        )
    return shapes.pop()


def _style_targets(
    job: ImageJob,
    d: _Decoded,
    features: VGGFeatures,
    cfg: StyleConfig,
    runtime: RuntimeOptions,
    cache: TargetCache | None,
    force: bool,
    device: torch.device,
) -> list[TargetsOutcome]:
    match = luminance_match_for(d.content.rgb, cfg)
    if cache is not None:
        return [
            RESIDENT.get_or_compute(
                uri, data, features, cfg, runtime, cache, match, force and not shares_targets(cfg), device
            )
            for uri, data in job.styles
        ]
    return [
        TargetsOutcome(compute_style_targets(s.rgb.to(device), features, cfg, luminance_match=match), "", cached=False)
        for s in d.styles
    ]


def _optimise(
    jobs: Sequence[ImageJob],
    decoded: Sequence[_Decoded],
    outcomes: Sequence[list[TargetsOutcome]],
    features: VGGFeatures,
    cfg: StyleConfig,
    shape: tuple[int, int] | None,
    device: torch.device,
    report_every: int,
    graphs: GraphCache,
) -> list[StylizeResult]:
    if shape is None:
        job, d = jobs[0], decoded[0]
        return [
            stylize(
                d.content.rgb.to(device),
                features,
                cfg,
                targets=[o.targets for o in outcomes[0]],
                init_image=d.start.rgb.to(device) if d.start is not None else None,
                regions=d.regions,
                on_step=job.on_step,
                report_every=report_every,
                graphs=graphs,
            )
        ]
    # The batch runs at the bucket's shape; each output goes back to the shape its photo has alone.
    results = stylize_batch(
        [resize(d.content.rgb.to(device), shape) for d in decoded],
        features,
        cfg,
        [[o.targets for o in own] for own in outcomes],
        on_steps=[j.on_step for j in jobs],
        report_every=report_every,
        graphs=graphs,
    )
    own = [fit_size(*image_hw(d.content.rgb), cfg.size) for d in decoded]
    return [
        r if tuple(r.image.shape[-2:]) == size else replace(r, image=resize(r.image, size))
        for r, size in zip(results, own, strict=True)
    ]


def measure_quality(
    image: Tensor,
    content: LoadedImage,
    styles: Sequence[tuple[str, bytes]],
    cfg: StyleConfig,
    runtime: RuntimeOptions,
    device: torch.device,
) -> dict[str, dict[str, float]]:
    """Content distance and style gain of the output (nst_batch.core.quality), at its size and at
    gallery scale, against the paintings decoded at the output's size (JPEGs at a reduced DCT
    scale): three VGG forwards per size, about 1 % of a pair at the defaults. Never fails a pair:
    what cannot be measured is left out."""
    from nst_batch.core.quality import LAST_LAYER, Evaluator, judge

    try:
        side = max(image.shape[-2:])
        paintings = [
            decode_image(data, uri, max_pixels=runtime.max_pixels, max_side=side).rgb.to(device) for uri, data in styles
        ]
        features = get_features(runtime.weights, runtime.weights_preprocessing, LAST_LAYER, "max", device)
        evaluator = Evaluator(features, content.rgb.to(device), paintings, cfg.blend_weights(len(paintings)))
        return judge(evaluator, image.to(device))
    except Exception:  # noqa: BLE001 - a measure, not the product: the output stands without it
        return {}


def _decoded_style(uri: str, data: bytes, cfg: StyleConfig, runtime: RuntimeOptions) -> LoadedImage:
    style = decode_image(data, uri, max_pixels=runtime.max_pixels, max_side=max(cfg.style_sides()))
    check_aspect(style, cfg, uri, style=True)
    return style
