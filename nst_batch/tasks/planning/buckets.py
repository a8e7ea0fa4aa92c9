"""Shape buckets: which photos can be optimised as one batch.

A batch is one tensor, so its photos must have one shape at every scale. Photos of one
parameter set share their scales' sides, so they share every scale's shape when they share the
output's: the bucket is the output's working shape (the longer side ``size``, the aspect kept).

Camera photos differ by a few pixels in that shape (4:3 from 4032 x 3024 is 384 px at 512, from
4000 x 2992 is 383; 3:2 is 341), which alone would make one bucket per camera. So the shorter
side is brought to a multiple of ``SNAP_PX`` when that stretches it by at most ``MAX_STRETCH``: the
photo is resampled to the bucket's shape, optimised there, and its output resampled back to its
own working shape, so an output has the size it has alone. What that costs, measured
(benchmarks/buckets.py on the shared photos, 2026-12-06): the round trip of a photo through its
bucket's shape and back is 43-47 dB PSNR, under what a JPEG at quality 95 changes (38-42 dB), and
the stretch is at most 2 % (a 341-px side is painted as 344 px: a stroke 0.9 % wider one way).
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
