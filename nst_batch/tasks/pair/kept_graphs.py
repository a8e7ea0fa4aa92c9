"""A thread's CUDA graphs, kept from one batch to the next (nst_batch.core.optimize.GraphCache),
and what the memory guard must know of them.

The graphs outlive a chunk (one of the flow's Prefect tasks): a thread runs chunk after chunk,
and the next chunk's first batch of the same shape replays the graphs the last one captured. The
memory they hold is taken as far as the driver is concerned, so the guard would refuse or shrink
the very batch that runs in it. Hence one rule: a batch of the kept shape is measured with the
graphs' memory counted free (it runs in that memory, nothing new is captured); a batch of another
shape drops them first, so the guard sees their memory free again, and the batch captures its
own. On a CPU nothing is kept (graphs are CUDA's).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from nst_batch.core import GraphCache, StyleConfig
from nst_batch.core.memory import estimate_memory


@dataclass(frozen=True)
class BatchShape:
    """What must not change for a batch to run in kept graphs (the core keys them the same way)."""

    cfg: StyleConfig  # as the device settles it
    photos: int
    height: int  # the photos' shape as the stylizer takes them (a batch's: its bucket's)
    width: int
    device: str

    def same_bucket(self, cfg: StyleConfig, height: int, width: int, device: str) -> bool:
        return (self.cfg, self.height, self.width, self.device) == (cfg, height, width, device)


@dataclass
class KeptGraphs:
    cache: GraphCache = field(default_factory=GraphCache)
    batch: BatchShape | None = None  # the batch whose graphs the cache holds
    held: int = 0  # what they hold, in bytes, as the memory guard estimates it

    def counted_free(self, batch: BatchShape) -> int:
        """Bytes the guard may count as free for ``batch``: what the kept graphs hold where they
        are this batch's shape; else they are dropped first (their memory is then free), and 0."""
        if batch == self.batch:
            return self.held
        self.drop()
        return 0

    def counted_free_for_bucket(self, cfg: StyleConfig, height: int, width: int, device: str) -> int:
        """The same for a bucket's batch size (the photos a batch holds are what is being chosen):
        a batch of the kept graphs' bucket, at the size they were made for, runs in them."""
        if self.batch is not None and self.batch.same_bucket(cfg, height, width, device):
            return self.held
        self.drop()
        return 0

    def ran(self, batch: BatchShape, device: torch.device) -> None:
        """``batch`` ran through the cache, which now holds its graphs (on CUDA; on a CPU none)."""
        self.batch, self.held = batch, 0
        if device.type == "cuda":
            estimate = estimate_memory(batch.cfg, batch.height, batch.width, "cuda", batch=batch.photos)
            # What its graphs and L-BFGS histories hold between batches: the scales' work, not the
            # allocator's slack (left out: the guard errs on the side of refusing).
            self.held = estimate.activations + estimate.transient + estimate.optimizer + estimate.kept_graphs

    def drop(self) -> None:
        self.cache.clear()
        self.batch, self.held = None, 0


_LOCAL = threading.local()


def kept_graphs() -> KeptGraphs:
    """This thread's kept graphs (a thread runs one batch at a time)."""
    kept: KeptGraphs | None = getattr(_LOCAL, "kept", None)
    if kept is None:
        kept = _LOCAL.kept = KeptGraphs()
    return kept
