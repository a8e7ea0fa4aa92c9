"""How much memory a stylization needs, counted from the network's shapes, before it starts.

The count is per pixel of the largest scale: the activations autograd keeps for the backward
pass (one tensor per convolution, since the ReLUs run in place; each pooling output and its int64
indices), the backward pass's transient gradients, the optimiser's state (L-BFGS keeps
``history`` pairs of image-sized vectors) and a few image-sized buffers; on CUDA, the coarser
scales' graphs that a GraphCache keeps for the next batch. A fixed base covers the
process itself (PyTorch's libraries, the weights). The benchmark (``nst bench``) prints this
estimate beside the measured peak RSS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nst_batch.core.config import MAX_SIDE_PX, MIN_SIDE_PX, StyleConfig
from nst_batch.core.image_ops import fit_size
from nst_batch.core.layers import LAYER_NAMES, channels_of
from nst_batch.core.tiles import GRAM_HALO_PX

_FLOAT = 4  # bytes; activations are kept in fp32 (bf16 autocast halves the conv outputs, not counted)
_INDEX = 8  # max-pool indices are int64
# The backward pass holds about three gradients of the largest layer at once (the incoming one,
# the one being computed, and the sum where a style layer also feeds the next convolution).
_TRANSIENT_LAYERS = 3
_IMAGE_BUFFERS = 12  # pixels, gradient, best and evaluated iterates, content, L-BFGS direction and flat copies
_WHOLE_IMAGE_BUFFERS = 8  # with tiles: the image, its content, the start, blending temporaries, the result
CPU_BASE_BYTES = (
    900 * 2**20
)  # measured (nst bench): peak RSS minus the per-pixel terms, 2-4 % under this estimate at 512 and 2048 px
CUDA_BASE_BYTES = 1_500 * 2**20  # CUDA context, cuDNN workspaces and allocator slack (calculated, not measured here)
# PyTorch's caching allocator keeps freed blocks for reuse: on an H200 the peak *reserved* memory
# was 1.44x the peak allocated at 2048 px (15.0 / 10.4 GiB) and 1.43x at 4096 px (59.0 / 41.3 GiB).
# A size the guard accepts must fit what is reserved, not what is allocated.
CUDA_RESERVE_RATIO = 0.45


# Computing style targets runs the network without gradients on the style image (resized to
# size x style_scale): only a few feature maps are alive at once. Measured (nst stylize at 512 px,
# peak RSS): style_scale 1 -> 1.4 GB, 4 -> 3.9 GB, i.e. ~860 bytes per style pixel, which is
# ~3.3 of the largest layer's outputs (64 channels of fp32) plus the image.
_STYLE_FORWARD_LAYERS = 3.3


@dataclass(frozen=True)
class MemoryEstimate:
    height: int
    width: int
    activations: int
    transient: int
    optimizer: int
    base: int
    style: int = 0  # computing the style targets, before the optimisation (the peak is the larger of the two)
    reserve: int = 0  # what PyTorch's CUDA allocator holds beyond what is allocated (0 on the CPU)
    kept_graphs: int = 0  # on CUDA, the coarser scales' graphs, kept for the next batch while the finest runs

    @property
    def working(self) -> int:
        """The optimisation's own: the network's, the optimiser's, the kept graphs'."""
        return self.activations + self.transient + self.optimizer + self.kept_graphs

    @property
    def total(self) -> int:
        return max(self.working, self.style) + self.reserve + self.base


def bytes_per_pixel(cfg: StyleConfig) -> tuple[float, float, float]:
    """(kept activations, backward transients, optimiser state) in bytes per output pixel."""
    kept, largest, scale = 0.0, 0.0, 1.0
    for name in LAYER_NAMES[: LAYER_NAMES.index(cfg.layers[-1]) + 1]:
        if name.startswith("conv"):
            kept += channels_of(name) * scale * _FLOAT
            largest = max(largest, channels_of(name) * scale * _FLOAT)
        elif name.startswith("pool"):
            scale /= 4
            kept += channels_of(name) * scale * (_FLOAT + (_INDEX if cfg.pooling == "max" else 0))
    image = 3 * _FLOAT
    history = cfg.lbfgs_history if cfg.optimizer == "lbfgs" else 2  # Adam: two moments
    return kept + 2 * image, _TRANSIENT_LAYERS * largest, (2 * history + _IMAGE_BUFFERS) * image


def coarser_pixels(cfg: StyleConfig) -> float:
    """The network's extra passes at the last scale, in that scale's pixels: the image downscaled
    to each coarser scale (``coarse_style_share``), e.g. 1/4 + 1/16 + 1/64 at 2048 from 256 px."""
    return coarser_scales(cfg) if cfg.coarse_style_share > 0 else 0.0


def coarser_scales(cfg: StyleConfig) -> float:
    """The coarser scales' pixels, in the last scale's: e.g. 1/4 for 256 then 512 px."""
    sides = cfg.sides()
    return sum((side / sides[-1]) ** 2 for side in sides[:-1])


def style_bytes(cfg: StyleConfig, style_pixels: int | None = None) -> int:
    """Peak of computing the style targets: the forward pass at the largest style size, in tiles
    (of the tile plus the halo) when ``tile_size`` makes it tiled. ``style_pixels`` is the style
    image's pixel count at that size; without it, a square image (the most pixels a side allows)."""
    side = max(cfg.style_sides())
    pixels = style_pixels if style_pixels is not None else side * side
    per_pixel = _STYLE_FORWARD_LAYERS * channels_of("conv1_1") * _FLOAT + 3 * _FLOAT
    held = 2 * 3 * _FLOAT * pixels  # the decoded style image and its resized copy
    if cfg.tile_size and side > cfg.tile_size:
        tile = (cfg.tile_size + 2 * GRAM_HALO_PX) ** 2
        return int(per_pixel * min(tile, pixels) + held)
    return int(per_pixel * pixels + held)


def estimate_memory(
    cfg: StyleConfig,
    content_height: int,
    content_width: int,
    device_type: str = "cpu",
    style_pixels: int | None = None,
    batch: int = 1,
) -> MemoryEstimate:
    """Peak memory of stylizing a ``content_height`` x ``content_width`` image with ``cfg``, the
    computation of its style targets included (see :func:`style_bytes`); with ``batch``, that many
    photos of that shape at once (nst_batch.core.stylizer.stylize_batch): every per-pixel term is
    the batch's, since each photo keeps its own activations and L-BFGS history; the targets are
    made one style at a time, before the optimisation, and the base is the process's."""
    height, width = fit_size(content_height, content_width, cfg.size)
    scale_kept, transient, optimizer = bytes_per_pixel(cfg)
    kept = scale_kept * (1 + coarser_pixels(cfg))
    base = CUDA_BASE_BYTES if device_type == "cuda" else CPU_BASE_BYTES
    style = style_bytes(cfg, style_pixels)
    pixels, held = height * width * batch, 0
    if cfg.tiled(height, width):
        # The network and the optimiser see one tile at a time; the whole image is only held.
        pixels = min(height, cfg.tile_size) * min(width, cfg.tile_size)
        held = _WHOLE_IMAGE_BUFFERS * 3 * _FLOAT * height * width
    # A CUDA graph keeps every tensor its capture allocated (its pool: the scale's activations and
    # gradients), and the stepper its L-BFGS history; a GraphCache keeps each scale's for the next
    # batch of the shape, so the coarser scales' are alive while the finest runs. Tiles keep none.
    kept_graphs = 0
    if device_type == "cuda" and not cfg.tiled(height, width):
        kept_graphs = int((scale_kept + transient + optimizer) * pixels * coarser_scales(cfg))
    dynamic = max((kept + transient + optimizer) * pixels + kept_graphs, style)
    reserve = int(CUDA_RESERVE_RATIO * dynamic) if device_type == "cuda" else 0
    return MemoryEstimate(
        height,
        width,
        int(kept * pixels),
        int(transient * pixels),
        int(optimizer * pixels),
        base + held,
        style,
        reserve,
        kept_graphs,
    )


def largest_batch(
    cfg: StyleConfig, height: int, width: int, budget_bytes: int, device_type: str = "cpu", limit: int = 64
) -> int:
    """The most photos of ``height`` x ``width`` (0 if not even one) a batch may hold within ``budget_bytes``."""
    fits = [
        b
        for b in range(1, limit + 1)
        if estimate_memory(cfg, height, width, device_type, batch=b).total <= budget_bytes
    ]
    return max(fits, default=0)


def largest_size(
    cfg: StyleConfig,
    budget_bytes: int,
    aspect: float = 4 / 3,
    device_type: str = "cpu",
    style_aspect: float | None = None,
) -> int:
    """The largest ``size`` (longer side, px) whose estimate fits ``budget_bytes``, for an image of
    ``aspect`` (longer side / shorter side) and a style image of ``style_aspect`` (None: square)."""

    def fits(side: int) -> bool:
        style_side = max(MIN_SIDE_PX, round(side * cfg.style_scale))
        style_pixels = round(style_side * style_side / style_aspect) if style_aspect else None
        estimate = estimate_memory(
            replace(cfg, size=side), max(1, round(side / aspect)), side, device_type, style_pixels
        )
        return estimate.total <= budget_bytes

    low, high = MIN_SIDE_PX, MAX_SIDE_PX  # the estimate grows with the side: bisect
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
