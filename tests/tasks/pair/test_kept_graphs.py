"""What the memory guard knows of a thread's kept CUDA graphs: a batch of their shape runs in
them (their memory counts as free), a batch of another shape drops them first. The GPU's memory
is faked: the arithmetic needs no GPU."""

from __future__ import annotations

import threading

import pytest
import torch

from nst_batch.core import StyleConfig
from nst_batch.core.memory import estimate_memory
from nst_batch.core.optimize import GraphCache
from nst_batch.core.stylizer import GraphShape
from nst_batch.tasks.errors import TooLargeError
from nst_batch.tasks.pair.kept_graphs import counted_free, counted_free_for_bucket, kept_graphs
from nst_batch.tasks.pair.memory_guard import batch_limit, check_fits, memory_budget

GIB = 2**30
CFG = StyleConfig(size=1024)
CUDA = torch.device("cuda:0")
BATCH = GraphShape(4, 768, 1024, torch.float32, "cuda:0", CFG)


@pytest.fixture
def gpu(monkeypatch):
    """A GPU of 80 GiB with ``free[0]`` bytes free, and nothing cached by this process."""
    monkeypatch.delenv("NST_MAX_MEMORY", raising=False)
    free = [40 * GIB]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0], 80 * GIB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    return free


class _Cache(GraphCache):
    """A GraphCache that says when it is cleared, holding ``shape``'s graphs (as a batch of it leaves them)."""

    def __init__(self, shape: GraphShape | None = None) -> None:
        super().__init__()
        self.shape, self.cleared = shape, 0

    def clear(self) -> None:
        super().clear()
        self.cleared += 1


def _held() -> int:
    estimate = estimate_memory(CFG, 768, 1024, "cuda", batch=4)
    return estimate.activations + estimate.transient + estimate.optimizer + estimate.kept_graphs


def test_the_kept_batch_counts_what_its_graphs_hold_as_free_and_another_drops_them():
    kept = _Cache(BATCH)
    assert _held() > 0
    assert counted_free(kept, BATCH, CUDA) == _held() and kept.cleared == 0
    assert counted_free_for_bucket(kept, CFG, 768, 1024, CUDA) == _held()  # any batch size of the bucket
    other = GraphShape(3, 768, 1024, torch.float32, "cuda:0", CFG)  # the last, smaller batch of the bucket
    assert counted_free(kept, other, CUDA) == 0
    assert kept.cleared == 1 and kept.shape is None
    kept.shape = BATCH
    assert counted_free_for_bucket(kept, CFG, 1024, 768, CUDA) == 0 and kept.cleared == 2


def test_on_a_cpu_nothing_is_held():
    cpu = GraphShape(4, 768, 1024, torch.float32, "cpu", CFG)
    assert counted_free(_Cache(cpu), cpu, torch.device("cpu")) == 0


def test_a_batch_that_runs_in_its_kept_graphs_is_neither_refused_nor_shrunk(gpu):
    """The first batch of 4 just fitted; its graphs then hold most of that memory (the driver
    reports less free). Counted as free, the next batch of the shape fits and a batch size comes
    out the same; without them, the guard would refuse it and shrink the batches."""
    gpu[0] = estimate_memory(CFG, 768, 1024, "cuda", batch=4).total + GIB // 2
    first = batch_limit(CFG, 768, 1024, CUDA)
    assert first == 4
    check_fits(CFG, 768, 1024, CUDA, "first", batch=4)
    kept = _Cache(BATCH)  # the first batch's graphs, kept
    before = gpu[0]
    gpu[0] -= _held()  # what the driver now reports free
    with pytest.raises(TooLargeError):
        check_fits(CFG, 768, 1024, CUDA, "uncounted", batch=4)
    assert batch_limit(CFG, 768, 1024, CUDA) < first
    check_fits(CFG, 768, 1024, CUDA, "second", batch=4, held=counted_free(kept, BATCH, CUDA))
    assert batch_limit(CFG, 768, 1024, CUDA, held=counted_free_for_bucket(kept, CFG, 768, 1024, CUDA)) == first
    assert memory_budget(CUDA, held=_held())[0] == before


def test_a_configured_budget_is_not_raised_by_kept_graphs(monkeypatch):
    monkeypatch.setenv("NST_MAX_MEMORY", "8G")
    assert memory_budget(torch.device("cuda:0"), held=5 * GIB)[0] == 8 * GIB


def test_each_thread_keeps_its_own():
    mine = kept_graphs()
    assert kept_graphs() is mine
    theirs: list[GraphCache] = []
    thread = threading.Thread(target=lambda: theirs.append(kept_graphs()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
