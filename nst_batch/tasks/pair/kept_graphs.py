"""A thread's CUDA graphs, kept from one batch to the next (nst_batch.core.optimize.GraphCache),
and what the memory guard must know of them.

The graphs outlive a chunk (one of the flow's Prefect tasks): a thread runs chunk after chunk,
and the next chunk's first batch of the same shape replays the graphs the last one captured. The
memory they hold is taken as far as the driver is concerned, so the guard would refuse or shrink
the very batch that runs in it. Hence one rule: a batch of the kept shape is measured with the
graphs' memory counted free (it runs in that memory, nothing new is captured); a batch of another
shape drops them first, so the guard sees their memory free again, and the batch captures its
own. On a CPU nothing is held (graphs are CUDA's).
"""

from __future__ import annotations

import threading

import torch

from nst_batch.core import GraphCache, StyleConfig
from nst_batch.core.memory import estimate_memory
from nst_batch.core.stylizer import GraphShape


def counted_free(graphs: GraphCache, shape: GraphShape, device: torch.device) -> int:
    """Bytes the guard may count as free for a batch of ``shape``: what the kept graphs hold where
    they are that shape's; else they are dropped first (their memory is then free), and 0."""
    if graphs.shape == shape:
        return _held(shape, device)
    graphs.clear()
    return 0


def counted_free_for_bucket(graphs: GraphCache, cfg: StyleConfig, height: int, width: int, device: torch.device) -> int:
    """The same for a bucket's batch size (the photos a batch holds are what is being chosen): a
    batch of the kept graphs' bucket, at the size they were made for, runs in them."""
    held = graphs.shape
    if isinstance(held, GraphShape) and (held.cfg, held.height, held.width, held.device) == (
        cfg,
        height,
        width,
        str(device),
    ):
        return _held(held, device)
    graphs.clear()
    return 0


def _held(shape: GraphShape, device: torch.device) -> int:
    """What a batch's graphs and L-BFGS histories hold between batches, as the guard estimates it:
    the scales' work, not the allocator's slack (left out: the guard errs on the side of refusing)."""
    if device.type != "cuda":
        return 0
    return estimate_memory(shape.cfg, shape.height, shape.width, "cuda", batch=shape.photos).working


_LOCAL = threading.local()


def kept_graphs() -> GraphCache:
    """This thread's (a thread runs one batch at a time)."""
    graphs: GraphCache | None = getattr(_LOCAL, "graphs", None)
    if graphs is None:
        graphs = _LOCAL.graphs = GraphCache()
    return graphs
