"""The stylizer's parameters and progress events: the one place where defaults live.

Every outer ring (the CLI, the manifest schema, the flow) reads its defaults from
:class:`StyleConfig`, so a default changed here changes everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from nst_batch.core.errors import ConfigError, did_you_mean
from nst_batch.core.layers import LAYER_NAMES

if TYPE_CHECKING:  # torch is not imported for the config alone: the CLI's --help stays fast
    from torch import Tensor

Pooling = Literal["max", "avg"]
Init = Literal["content", "noise", "image"]
Optimizer = Literal["lbfgs", "adam"]
Precision = Literal["auto", "fp32", "bf16"]
Upsample = Literal["image", "residual"]
StyleLoss = Literal["gram", "swd"]

# Gatys et al. (2016), section 2: content at conv4_2, style at conv1_1..conv5_1. Caffe's ReLUs run
# in place, so the blobs the paper reads hold post-ReLU values: relu4_2 and relu{1..5}_1 here.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Five pooling layers deep, relu5_1 sees the image at 1/16 of its size: below 16 px it has no pixels.
MIN_SIDE_PX = 16
MAX_SIDE_PX = 16384


MAX_SCALES = 6


def scales_from(value: str | int) -> tuple[float, ...]:
    """The one grammar of ``scales`` for the CLI and manifests: ``auto`` -> () (from coarse_size
    up); a count ``N`` -> N sizes, each half the next (``3``: 0.25, 0.5, 1); ``0.5,1`` -> as given."""
    text = str(value).strip()
    if text.lower() == "auto":
        return ()
    if text.isdigit():
        n = int(text)
        if not 1 <= n <= MAX_SCALES:
            raise ConfigError(f"scales N (a count) must be 1..{MAX_SCALES}, got {n}", settings=["scales"])
        return tuple(1 / 2 ** (n - 1 - i) for i in range(n))
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(
            f"scales must be auto, a count 1..{MAX_SCALES} or fractions of size like 0.5,1; got {text[:40]!r}",
            settings=["scales"],
        ) from None


def _help(text: str, shown: str | None = None, off: str | None = None) -> dict[str, str]:
    """A field's help; ``shown``: its default as said (for an empty one); ``off``: what turning
    a switch that is on by default off does."""
    return {
        "help": text,
        **({"shown": shown} if shown is not None else {}),
        **({"off": off} if off is not None else {}),
    }


@dataclass(frozen=True)
class StyleConfig:
    """Everything that shapes a stylization, except the images, the weights and the device.

    The losses are normalised so that these weights work at any image size (see
    ``nst_batch.core.losses``); they are the weights of jcjohnson/neural-style, whose normalisation
    we share, on the same original VGG-19.
    """

    # Each field's ``help`` (in setting names: the CLI says them as its flags) is the one text
    # behind `nst stylize --help` and the manifest's schema; ``shown`` replaces an empty default.
    size: int = field(default=512, metadata=_help("max side of the output, px"))
    # Coarse-to-fine (Gatys et al. 2017, section 5): the image is optimised at each size in turn,
    # upsampled and refined. VGG-19's receptive field spans a fixed number of pixels, so the size
    # where the large strokes form must not grow with the output: by default (``scales`` empty)
    # the first scale is ``coarse_size`` px whatever ``size`` is, doubling up to ``size`` (see
    # :func:`pyramid`). ``scales`` set: each entry is a fraction of ``size``, the last 1.0.
    scales: tuple[float, ...] = field(
        default=(),
        metadata=_help(
            "coarse-to-fine: auto (from coarse_size, doubling up to `size`), a count N (sizes halving up to `size`) or "
            "fractions of `size`, e.g. 0.5,1",
            shown="auto",
        ),
    )
    coarse_size: int = field(
        default=256, metadata=_help("with `scales` auto: the first scale's max side, px, whatever `size` is")
    )
    # Iterations per scale, from the coarsest: fewer entries than scales repeat the last one for
    # the finer scales (a finer scale starts from the upsampled result and needs fewer); entries
    # beyond the scales are unused (a small output has fewer scales). An upper bound: a scale
    # stops earlier once the loss stops improving (see early_stop_*). 92 + 23 with the swd loss
    # takes the time Gram's 120 + 30 took (an swd evaluation costs 1.3x on a CPU), and at that
    # equal time gave more style on all 4 measured pairs, a closer photo on 3 (docs/performance.md).
    iterations: tuple[int, ...] = field(
        default=(92, 23),
        metadata=_help(
            "max iterations per scale, from the coarsest: N for all, or N1,N2,... where the last repeats for the "
            "finer scales"
        ),
    )
    # At a finer scale, this share of the content and style loss is the coarser scales' loss on
    # the image downscaled to their sizes (split equally between them). The refinement then adds
    # fine texture without washing out the strokes formed at the coarse scale, so a 2x output
    # shown at the smaller size keeps its style (a departure from the paper, which matches one
    # size; in the spirit of Snelgrove's multi-scale Gram losses, 2017). Measured without it, a
    # 512-px output shown at 256 px had 17 % less style than the 256-px output. 0 = the paper.
    coarse_style_share: float = field(
        default=0.5,
        metadata=_help(
            "at finer scales, the share of the loss taken on the image downscaled to the coarser scales, so their "
            "strokes "
            "survive the refinement; 0 = the paper's single-size loss"
        ),
    )
    content_weight: float = field(default=10.0, metadata=_help("weight of the content loss"))
    style_weight: float = field(default=100.0, metadata=_help("weight of the style loss"))
    # A departure from the paper, measured: "swd" matches the whole distribution of each style
    # layer's features along fixed random directions (Heitz et al., CVPR 2021), not only their
    # second moments (Gram), which removes Gram's washed-out contrast and colours; normalised so
    # that style_weight means about the same (nst_batch.core.losses). "gram" is the paper's.
    style_loss: StyleLoss = field(
        default="swd",
        metadata=_help(
            "the style loss: gram (the paper's Gram matrices) or swd (sliced Wasserstein: each layer's feature "
            "distribution along random directions, drawn from `seed`)"
        ),
    )
    # TV is in [0, 1] pixel units (a photo has ~1e-3): this keeps it ~1 % of the loss.
    tv_weight: float = field(default=1e5, metadata=_help("total-variation smoothing"))
    content_layers: tuple[str, ...] = field(
        default=DEFAULT_CONTENT_LAYERS, metadata=_help("VGG-19 layers of the content loss")
    )
    style_layers: tuple[str, ...] = field(
        default=DEFAULT_STYLE_LAYERS, metadata=_help("VGG-19 layers of the style loss")
    )
    style_layer_weights: tuple[float, ...] = field(
        default=(), metadata=_help("one weight per style layer", shown="all 1")
    )
    # Normalised to sum 1, as jcjohnson/neural-style.
    style_blend: tuple[float, ...] = field(
        default=(), metadata=_help("one weight per style image, e.g. 0.7,0.3", shown="equal")
    )
    # At each scale, the style image's max side is style_scale x the output's.
    style_scale: float = field(default=1.0, metadata=_help("style size relative to the output"))
    # The paper prefers avg; max is what most implementations ship.
    pooling: Pooling = field(default="max", metadata=_help("VGG-19's pooling"))
    init: Init = field(default="content", metadata=_help("start from the content, noise, or an image"))
    # How a scale starts from the one before: "image" upsamples the result; "residual" adds the
    # upsampled change (result - content) to the content at the new size, keeping its fine detail.
    upsample: Upsample = field(
        default="image",
        metadata=_help(
            "how a scale starts from the coarser one: the upsampled result (image), or the content at the new size "
            "plus the "
            "upsampled change (residual)"
        ),
    )
    # A departure from the paper: at the first scale, L-BFGS optimises a pyramid of the image
    # rather than its pixels (nst_batch.core.precondition), so large strokes form in far fewer
    # iterations; finer scales refine the pixels. 0 = pixels everywhere.
    precondition: int = field(
        default=3,
        metadata=_help(
            "levels of the image pyramid L-BFGS optimises at the first scale, which speeds up the large strokes; 0 = "
            "the pixels, "
            "as the paper"
        ),
    )
    seed: int = field(default=0, metadata=_help("seed for noise init and the sliced-Wasserstein directions"))
    optimizer: Optimizer = field(default="lbfgs", metadata=_help("lbfgs (the paper's) or adam"))
    # Memory is ~ 2 x history x image size; 50 keeps 2048 px under 1.3 GB.
    lbfgs_history: int = field(default=50, metadata=_help("L-BFGS history size"))
    adam_lr: float = field(default=0.02, metadata=_help("Adam's learning rate, in [0, 1] pixel units"))
    # Stop a scale early when the best loss improved by less than this fraction over the last
    # ``early_stop_window`` iterations. 0 disables early stopping.
    early_stop_rtol: float = field(
        default=2.5e-3,
        metadata=_help(
            "stop a scale when the loss improved less than this fraction over early_stop_window iterations; 0 = never"
        ),
    )
    early_stop_window: int = field(default=50, metadata=_help("iterations early_stop_rtol looks back over"))
    # Luminance-only transfer (Gatys et al. 2017, section 5.1): optimise the luminance inside the
    # loop and take the colours (YIQ chroma) from the content.
    preserve_color: bool = field(default=False, metadata=_help("luminance-only transfer: keep the content's colours"))
    # With preserve_color: match the style luminance's mean and std to the content's first.
    match_luminance: bool = field(
        default=True,
        metadata=_help(
            "with preserve_color, match the style's luminance mean/std to the content's",
            off="with preserve_color, do not match the style's luminance mean/std to the content's",
        ),
    )
    # auto: bf16 autocast of the network on CPUs with native bf16 (AVX512-BF16, AMX), where it
    # measured 0.6x fp32's time at the same distances; fp32 elsewhere (GPUs keep TF32 until bf16 is
    # measured there). Settled per device by nst_batch.core.device.for_device; a run records the result.
    precision: Precision = field(
        default="auto",
        metadata=_help(
            "bf16 autocasts the network; auto = bf16 on CPUs with native bf16 (AVX512-BF16, AMX), fp32 elsewhere"
        ),
    )
    # Beyond the memory bound: scales whose longer side exceeds tile_size px are optimised in
    # overlapping tiles of at most tile_size px, each toward the whole style's Gram targets (see
    # nst_batch.core.tiles). Memory then follows the tile. 0 = never tile.
    tile_size: int = field(
        default=0,
        metadata=_help(
            "optimise scales larger than this many px in overlapping tiles, so memory follows the tile, not the output "
            "(for outputs beyond what fits); 0 = off"
        ),
    )
    tile_overlap: int = field(default=64, metadata=_help("px shared by neighbouring tiles, blended with linear ramps"))

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(m for _, m in problems), settings=[k for k, _ in problems])

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer the losses read, deepest last."""
        wanted = set(self.content_layers) | set(self.style_layers)
        return tuple(name for name in LAYER_NAMES if name in wanted)

    def tiled(self, height: int, width: int) -> bool:
        """Whether a scale of this size is optimised in tiles."""
        return self.tile_size > 0 and max(height, width) > self.tile_size

    @property
    def num_scales(self) -> int:
        return len(self.sides())

    def iterations_per_scale(self) -> tuple[int, ...]:
        """The iteration budget of each scale: the last entry repeats for the finer scales."""
        its = self.iterations
        return tuple(its[min(i, len(its) - 1)] for i in range(self.num_scales))

    def sides(self) -> tuple[int, ...]:
        """The max side, px, of the image at each scale."""
        if not self.scales:
            return pyramid(self.size, self.coarse_size)
        return tuple(max(MIN_SIDE_PX, round(self.size * s)) for s in self.scales)

    def style_sides(self) -> tuple[int, ...]:
        """The max side, px, that the style images are resized to at each scale."""
        return tuple(max(MIN_SIDE_PX, round(side * self.style_scale)) for side in self.sides())

    def layer_weights(self) -> dict[str, float]:
        weights = self.style_layer_weights or (1.0,) * len(self.style_layers)
        return dict(zip(self.style_layers, weights, strict=True))

    def to_json(self) -> dict[str, Any]:
        """Every field, tuples as lists: the one form a config takes outside Python (the plan's JSON,
        a pair's fingerprint, the sidecar and --metadata)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> StyleConfig:
        """The config of :meth:`to_json`'s form (lists for tuples; fields left out keep their defaults)."""
        settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**settings)

    def blend_weights(self, num_styles: int) -> tuple[float, ...]:
        """Blend weights for ``num_styles`` styles, normalised to sum 1 (as jcjohnson/neural-style)."""
        raw = self.style_blend or (1.0,) * num_styles
        if len(raw) != num_styles:
            raise ConfigError(
                f"style_blend has {len(raw)} weights for {num_styles} style images", settings=["style_blend"]
            )
        total = sum(raw)
        return tuple(w / total for w in raw)


def pyramid(size: int, coarse: int) -> tuple[int, ...]:
    """The default scales, px: ``coarse``, doubling, then ``size``. A last step under 1.5x is
    merged into the output size (a 520-px output is not refined from 512 px), so an output up to
    1.5x ``coarse`` is a single scale: ``pyramid(512, 256) == (256, 512)``,
    ``pyramid(2048, 256) == (256, 512, 1024, 2048)``, ``pyramid(128, 256) == (128,)``."""
    sides: list[int] = []
    side = coarse
    while side * 1.5 <= size:
        sides.append(side)
        side *= 2
    return (*sides, size)


def show(value: object) -> str:
    """A value as a user wrote it: ``-3`` rather than ``(-3,)``, ``0.5, 1`` rather than ``(0.5, 1.0)``."""
    if isinstance(value, tuple | list):
        return ", ".join(show(v) for v in value) if value else "(none)"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _problems(cfg: StyleConfig) -> list[tuple[str, str]]:
    """Every range problem of ``cfg``: (the setting's name, a readable sentence)."""
    out: list[tuple[str, str]] = []

    def check(ok: bool, setting: str, message: str) -> None:
        if not ok:
            out.append((setting, message))

    check(
        MIN_SIDE_PX <= cfg.size <= MAX_SIDE_PX, "size", f"size must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px, got {cfg.size}"
    )
    check(all(0 < s <= 1 for s in cfg.scales), "scales", f"scales must be in (0, 1], got {show(cfg.scales)}")
    check(
        list(cfg.scales) == sorted(set(cfg.scales)),
        "scales",
        f"scales must be strictly increasing, got {show(cfg.scales)}",
    )
    check(not cfg.scales or cfg.scales[-1] == 1.0, "scales", f"the last scale must be 1, got {show(cfg.scales)}")
    check(
        MIN_SIDE_PX <= cfg.coarse_size <= MAX_SIDE_PX,
        "coarse_size",
        f"coarse_size must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px, got {cfg.coarse_size}",
    )
    check(len(cfg.iterations) >= 1, "iterations", "iterations must have at least one entry")
    check(
        all(0 <= i <= 100_000 for i in cfg.iterations),
        "iterations",
        f"iterations must be 0..100000, got {show(cfg.iterations)}",
    )
    for name in ("content_weight", "style_weight", "tv_weight"):
        value = getattr(cfg, name)
        check(math.isfinite(value) and value >= 0, name, f"{name} must be a finite number >= 0, got {show(value)}")
    check(
        cfg.style_weight > 0 or cfg.content_weight > 0,
        "style_weight",
        "content_weight and style_weight cannot both be 0",
    )
    check(len(cfg.content_layers) >= 1, "content_layers", "content_layers must name at least one layer")
    check(len(cfg.style_layers) >= 1, "style_layers", "style_layers must name at least one layer")
    for setting in ("content_layers", "style_layers"):
        for layer in getattr(cfg, setting):
            if layer not in LAYER_NAMES:  # not check(): the suggestion costs ms, and configs are made per pair
                out.append(
                    (
                        setting,
                        f"{setting}: unknown VGG-19 layer {layer!r}{did_you_mean(layer, LAYER_NAMES)}; known: "
                        f"conv1_1, relu1_1, ..., pool5",
                    )
                )
    check(
        not cfg.style_layer_weights or len(cfg.style_layer_weights) == len(cfg.style_layers),
        "style_layer_weights",
        f"style_layer_weights needs {len(cfg.style_layers)} entries, got {len(cfg.style_layer_weights)}",
    )
    check(
        all(math.isfinite(w) and w >= 0 for w in cfg.style_layer_weights),
        "style_layer_weights",
        "style_layer_weights must be >= 0",
    )
    check(
        all(math.isfinite(w) and w >= 0 for w in cfg.style_blend) and (not cfg.style_blend or sum(cfg.style_blend) > 0),
        "style_blend",
        f"style_blend weights must be >= 0 with a positive sum, got {show(cfg.style_blend)}",
    )
    check(
        0 <= cfg.coarse_style_share < 1,
        "coarse_style_share",
        f"coarse_style_share must be in [0, 1), got {show(cfg.coarse_style_share)}",
    )
    check(
        math.isfinite(cfg.style_scale) and 0.05 <= cfg.style_scale <= 8,
        "style_scale",
        f"style_scale must be 0.05..8, got {show(cfg.style_scale)}",
    )
    check(cfg.pooling in ("max", "avg"), "pooling", f"pooling must be max or avg, got {cfg.pooling!r}")
    check(cfg.init in ("content", "noise", "image"), "init", f"init must be content, noise or image, got {cfg.init!r}")
    check(0 <= cfg.seed < 2**63, "seed", f"seed must be 0..2^63-1, got {cfg.seed}")
    check(cfg.style_loss in ("gram", "swd"), "style_loss", f"style_loss must be gram or swd, got {cfg.style_loss!r}")
    check(
        cfg.upsample in ("image", "residual"), "upsample", f"upsample must be image or residual, got {cfg.upsample!r}"
    )
    check(cfg.optimizer in ("lbfgs", "adam"), "optimizer", f"optimizer must be lbfgs or adam, got {cfg.optimizer!r}")
    check(0 <= cfg.precondition <= 8, "precondition", f"precondition must be 0..8 levels, got {cfg.precondition}")
    check(1 <= cfg.lbfgs_history <= 1000, "lbfgs_history", f"lbfgs_history must be 1..1000, got {cfg.lbfgs_history}")
    check(math.isfinite(cfg.adam_lr) and cfg.adam_lr > 0, "adam_lr", f"adam_lr must be > 0, got {show(cfg.adam_lr)}")
    check(
        0 <= cfg.early_stop_rtol < 1,
        "early_stop_rtol",
        f"early_stop_rtol must be in [0, 1), got {show(cfg.early_stop_rtol)}",
    )
    check(
        cfg.early_stop_window >= 1, "early_stop_window", f"early_stop_window must be >= 1, got {cfg.early_stop_window}"
    )
    check(
        cfg.precision in ("auto", "fp32", "bf16"),
        "precision",
        f"precision must be auto, fp32 or bf16, got {cfg.precision!r}",
    )
    check(
        cfg.tile_size == 0 or 128 <= cfg.tile_size <= MAX_SIDE_PX,
        "tile_size",
        f"tile_size must be 0 (off) or 128..{MAX_SIDE_PX} px, got {cfg.tile_size}",
    )
    check(
        0 <= cfg.tile_overlap and (cfg.tile_size == 0 or 2 * cfg.tile_overlap < cfg.tile_size),
        "tile_overlap",
        f"tile_overlap must be >= 0 and under half of tile_size, got {cfg.tile_overlap}",
    )
    return out


@dataclass(frozen=True)
class StepInfo:
    """One progress event from the optimisation loop.

    ``losses`` holds the weighted terms (``content``, ``style``, ``tv``) and ``total``. They are
    read back from the device only every ``report_every`` iterations and at the end of a scale
    (elsewhere they are ``None``), so that a GPU run is not synchronised at every step.
    """

    scale_index: int  # 0-based
    num_scales: int
    height: int
    width: int
    iteration: int  # 1-based within the scale
    max_iterations: int
    elapsed_s: float  # since the start of the whole run
    losses: dict[str, float] | None = None
    scale_done: bool = False  # the last event of this scale
    stopped_early: bool = False
    # The best iterate so far, (1, 3, h, w) RGB in [0, 1], at the same report points as ``losses``,
    # for callbacks that want it (:class:`WantsImages`: previews, quality tracking); else None.
    image: Tensor | None = None
    # Work in pixel-iterations (an iteration costs about the same per pixel at every size, so a
    # 512-px iteration weighs ~4x a 256-px one): run so far, and still planned (the rest of this
    # scale and the later scales at their maximum iterations).
    work_done: float = 0.0
    work_left: float = 0.0

    @property
    def progress(self) -> float:
        """Fraction of the run done, 0..1, by work."""
        total = self.work_done + self.work_left
        return self.work_done / total if total > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at the speed measured so far; None before any work."""
        if self.work_done <= 0:
            return None
        return self.elapsed_s * self.work_left / self.work_done


class WantsImages:
    """Base of a progress callback that is given each step's best image (``StepInfo.image``):
    previews, live views, quality tracking. Any other callback gets None there: an image is a copy
    made for whoever asks. Subclass it, or wrap a function with :func:`with_images`."""

    def __call__(self, info: StepInfo) -> None:
        raise NotImplementedError


class _WithImages(WantsImages):
    def __init__(self, callback: Callable[[StepInfo], None]) -> None:
        self.callback = callback

    def __call__(self, info: StepInfo) -> None:
        self.callback(info)


def with_images(callback: Callable[[StepInfo], None]) -> WantsImages:
    """``callback``, given each step's best image too."""
    return _WithImages(callback)


@dataclass(frozen=True)
class ScaleReport:
    """What happened at one scale of a run."""

    height: int
    width: int
    iterations: int
    max_iterations: int
    stopped_early: bool
    losses: dict[str, float]
    seconds: float
    # Whether the scale's iterations replayed from a CUDA graph: None where graphs do not apply (the
    # CPU, Adam, graphs off), False when capture failed (``capture_error`` says why) and it ran eagerly.
    graphed: bool | None = None
    capture_error: str = ""
    # It replayed a graph an earlier batch of its shape captured (optimize.GraphCache): no warm-up, no capture.
    graph_kept: bool = False


@dataclass(frozen=True)
class StylizeResult:
    """The stylized image, (1, 3, H, W) in [0, 1] on the run's device, and what it took."""

    image: Tensor
    scales: tuple[ScaleReport, ...] = field(default_factory=tuple)

    @property
    def final_losses(self) -> dict[str, float]:
        return dict(self.scales[-1].losses) if self.scales else {}

    @property
    def total_iterations(self) -> int:
        return sum(s.iterations for s in self.scales)
