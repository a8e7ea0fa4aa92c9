"""Shape buckets: which photos can be optimised as one batch.

A batch is one tensor, so its photos must have one shape at every scale. Photos of one
parameter set share their scales' sides, so they share every scale's shape when they share the
output's: the bucket is the output's working shape (the longer side ``size``, the aspect kept).

Camera photos differ by a few pixels in that shape (4:3 from 4032 x 3024 is 384 px at 512, from
4000 x 2992 is 383; 3:2 is 341), which alone would make one bucket per camera. So the shorter
side is brought to a multiple of ``SNAP_PX`` when that stretches it by at most ``MAX_STRETCH``: the
photo is resampled to the bucket's shape, optimised there, and its output resampled back to its
own working shape, so an output has the size it has alone. What that costs, measured
(benchmarks/buckets.py, 2026-12-06, the shared photos cropped to 3:2 and 4:5): the round trip of
a photo through its bucket's shape and back changes it by 40.9-53.1 dB PSNR, less than the JPEG
at quality 95 every output may go through changes the same photo (36.4-43.7 dB; each photo's
round trip is 3.9-9.5 dB above its JPEG's), and the stretch was at most 0.9 % (a 341-px side
painted as 344 px: strokes 0.9 % wider one way). 42 camera sizes (4:3, 3:2, 16:9, 1:1, 4:5,
landscape and portrait) make 11 working shapes at 512 px and 9 buckets (13 and 9 at 256 and 1024).
A photo whose snap would stretch it more (a side under 200 px) keeps its own shape: it is its
own bucket. Pure Python: the planner and the flow use it without PyTorch.
"""

from __future__ import annotations

SNAP_PX = 8
MAX_STRETCH = 0.02


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the longer side ``size`` and the aspect kept: the shape the stylizer
    gives the output (the same rounding as ``nst_batch.core.image_ops.fit_size``)."""
    ratio = size / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def bucket_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The shape a photo of ``height`` x ``width`` is optimised at in a batch: its working shape with
    the shorter side on a multiple of ``SNAP_PX`` when that stretches it by at most ``MAX_STRETCH``."""
    h, w = working_shape(height, width, size)
    short = min(h, w)
    snapped = max(SNAP_PX, round(short / SNAP_PX) * SNAP_PX)
    if abs(snapped - short) > MAX_STRETCH * short:
        return h, w
    return (snapped, w) if h <= w else (h, snapped)


def distinct_shapes(sizes: list[tuple[int, int]], size: int) -> tuple[int, int]:
    """(working shapes, buckets) among photos of these (height, width) at ``size``."""
    return len({working_shape(h, w, size) for h, w in sizes}), len({bucket_shape(h, w, size) for h, w in sizes})
