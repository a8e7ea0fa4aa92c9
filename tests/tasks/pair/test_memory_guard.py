from dataclasses import replace

import pytest
import torch

from nst_batch.core import StyleConfig
from nst_batch.tasks.errors import TooLargeError
from nst_batch.tasks.pair.memory_guard import check_fits, memory_budget, parse_bytes


@pytest.mark.parametrize(
    "text, expected",
    [("8G", 8 * 2**30), ("8GiB", 8 * 2**30), ("500m", 500 * 2**20), ("1.5g", int(1.5 * 2**30)), ("1024", 1024)],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_bad_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="NST_MAX_MEMORY must be a size like 8G"):
        parse_bytes("lots")


def test_budget_comes_from_the_environment_or_the_machine(monkeypatch):
    monkeypatch.delenv("NST_MAX_MEMORY", raising=False)
    available, source = memory_budget(torch.device("cpu"))
    assert source == "RAM available" and 0 < available
    monkeypatch.setenv("NST_MAX_MEMORY", "3G")
    assert memory_budget(torch.device("cpu")) == (3 * 2**30, "NST_MAX_MEMORY=3G")


def test_check_fits(monkeypatch):
    monkeypatch.setenv("NST_MAX_MEMORY", "8G")
    check_fits(StyleConfig(size=1024), 768, 1024, torch.device("cpu"), "x.jpg")
    with pytest.raises(
        TooLargeError, match=r"x.jpg: a 4096x3072 px output .* use size \d+ or less, or a smaller lbfgs_history"
    ):
        check_fits(StyleConfig(size=4096), 768, 1024, torch.device("cpu"), "x.jpg")


def test_pairs_sharing_a_gpu_share_its_budget(monkeypatch):
    monkeypatch.setenv("NST_MAX_MEMORY", "8G")
    assert memory_budget(torch.device("cpu"), sharing=2) == (4 * 2**30, "NST_MAX_MEMORY=8G shared by 2 pairs")


def test_the_device_pool_gives_each_gpu_k_slots_and_a_cpu_one(monkeypatch):
    from nst_batch.tasks.pair.device_pool import DevicePool, pairs_per_gpu

    gpus = DevicePool([torch.device("cuda:0"), torch.device("cuda:1")], pairs_per_gpu=2)
    assert gpus.size == 4
    slots = [gpus._free.get() for _ in range(4)]
    assert [str(s.device) for s in slots] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"] and all(
        s.sharing == 2 for s in slots
    )
    cpu = DevicePool([torch.device("cpu")], pairs_per_gpu=2)
    assert cpu.size == 1
    with cpu.acquire() as device:
        assert device.type == "cpu"
    monkeypatch.setenv("NST_PAIRS_PER_GPU", "3")
    assert pairs_per_gpu() == 3
    monkeypatch.setenv("NST_PAIRS_PER_GPU", "zero")
    with pytest.raises(ValueError, match="NST_PAIRS_PER_GPU must be a whole number 1..64"):
        pairs_per_gpu()


def test_a_cuda_estimate_counts_the_allocators_reserve():
    from nst_batch.core.memory import CUDA_RESERVE_RATIO, estimate_memory

    cpu, cuda = (
        estimate_memory(StyleConfig(size=2048), 1536, 2048, "cpu"),
        estimate_memory(StyleConfig(size=2048), 1536, 2048, "cuda"),
    )
    dynamic = cpu.activations + cpu.transient + cpu.optimizer + cuda.kept_graphs
    assert cpu.reserve == 0 and cuda.reserve == pytest.approx(CUDA_RESERVE_RATIO * dynamic, rel=1e-6)


def test_a_cuda_estimate_counts_the_coarser_scales_kept_graphs():
    """A GraphCache keeps every scale's graph for the next batch: at 2048 px from 256 px, the
    scales at 256, 512 and 1024 px (1/64 + 1/16 + 1/4 of the last one's pixels) stay alive while
    the last runs. Tiles keep none; the CPU has no graphs."""
    from nst_batch.core.memory import bytes_per_pixel, estimate_memory

    cfg = StyleConfig(size=2048)
    assert cfg.sides() == (256, 512, 1024, 2048)
    cuda, cpu = estimate_memory(cfg, 1536, 2048, "cuda"), estimate_memory(cfg, 1536, 2048, "cpu")
    per_pixel = sum(bytes_per_pixel(cfg))
    assert cuda.kept_graphs == pytest.approx(per_pixel * 1536 * 2048 * (1 / 64 + 1 / 16 + 1 / 4), rel=1e-6)
    assert cpu.kept_graphs == 0
    assert estimate_memory(replace(cfg, tile_size=512), 1536, 2048, "cuda").kept_graphs == 0


def test_a_gpus_budget_counts_this_processs_own_allocator_cache(monkeypatch):
    """Memory this process's allocator holds but no tensor uses is free for the next pair here,
    though the driver reports it taken (faked: no GPU is needed to check the arithmetic)."""
    monkeypatch.delenv("NST_MAX_MEMORY", raising=False)
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 12 * gib)
    budget, source = memory_budget(torch.device("cuda:0"))
    assert budget == 28 * gib and source == "free memory of Fake GPU"
    assert memory_budget(torch.device("cuda:0"), sharing=4)[0] == 20 * gib  # a quarter of the card at most


def test_a_thread_gets_a_stream_on_each_gpu_it_works_on(monkeypatch):
    """A stream belongs to one GPU: a thread whose next slot is on another GPU gets a stream there,
    not the first GPU's (its work would run on the new GPU's legacy stream)."""
    from nst_batch.tasks.pair.device_pool import DevicePool, Slot

    made = []

    class FakeStream:
        def __init__(self, device):
            self.device = device
            made.append(self)

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    pool = DevicePool([torch.device("cuda:0"), torch.device("cuda:1")], pairs_per_gpu=2)
    first = pool._stream(Slot(torch.device("cuda:0"), 2))
    other = pool._stream(Slot(torch.device("cuda:1"), 2))
    again = pool._stream(Slot(torch.device("cuda:0"), 2))
    assert first is again and other is not first
    assert [str(s.device) for s in made] == ["cuda:0", "cuda:1"]


def test_a_dask_worker_s_threads_are_its_pairs_per_gpu(monkeypatch):
    """`dask cuda worker --nthreads 1` runs one task at a time: its pool has one slot per GPU and
    the guard gives that pair the whole GPU, not half of it for a pair that never comes."""
    import types

    import distributed

    from nst_batch.tasks.pair.device_pool import DEFAULT_PAIRS_PER_GPU, pairs_per_gpu

    monkeypatch.delenv("NST_PAIRS_PER_GPU", raising=False)
    assert pairs_per_gpu() == DEFAULT_PAIRS_PER_GPU  # not in a worker
    monkeypatch.setattr(
        distributed, "get_worker", lambda: types.SimpleNamespace(state=types.SimpleNamespace(nthreads=1))
    )
    assert pairs_per_gpu() == 1
    monkeypatch.setattr(
        distributed, "get_worker", lambda: types.SimpleNamespace(state=types.SimpleNamespace(nthreads=3))
    )
    assert pairs_per_gpu() == 3
    monkeypatch.setenv("NST_PAIRS_PER_GPU", "2")  # said explicitly: it wins
    assert pairs_per_gpu() == 2
