"""Which device each concurrent job runs on: a pool of slots, ``pairs_per_gpu`` per GPU.

At 512 px one pair uses ~0.5 GB of a 80-140 GB GPU and, its loop being launch-bound, leaves the
GPU idle between launches: two pairs at once, each on its own CUDA stream, measured 1,100 pairs
per hour on an H200 against 686 for one at a time (four: 782, the Python threads then contend
for the GIL). So the default is 2 per GPU; ``NST_PAIRS_PER_GPU`` changes it, and on a Dask worker
the worker's ``--nthreads`` is the setting (see :func:`pairs_per_gpu`). A CPU runs one job
at a time: PyTorch already uses every core for one convolution.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from nst_batch.core import resolve_device
from nst_batch.tasks.environment import MAX_PAIRS_PER_GPU, PAIRS_PER_GPU

PAIRS_PER_GPU_ENV = PAIRS_PER_GPU.name
DEFAULT_PAIRS_PER_GPU = 2


@dataclass(frozen=True)
class Slot:
    device: torch.device
    sharing: int  # how many slots share this device (the memory guard gives each its share)


class DevicePool:
    """Slots checked out for the duration of one job; each GPU has ``pairs_per_gpu`` of them, and
    a job on a GPU runs on a CUDA stream of its own."""

    def __init__(self, devices: list[torch.device], pairs_per_gpu: int = 1) -> None:
        self.devices = devices
        self._pairs_per_gpu = pairs_per_gpu
        self._free: queue.Queue[Slot] = queue.Queue()
        for round_ in range(pairs_per_gpu):  # round-robin: the first jobs spread over the GPUs
            for d in devices:
                if round_ < self.sharing(d):
                    self._free.put(Slot(d, self.sharing(d)))
        self.size = self._free.qsize()
        self._streams: dict[tuple[int, str], torch.cuda.Stream] = {}

    def sharing(self, device: torch.device) -> int:
        """How many slots share ``device`` (the memory guard gives each its share): ``pairs_per_gpu``
        on a GPU; a CPU takes one job at a time whatever that is."""
        return self._pairs_per_gpu if device.type == "cuda" else 1

    @contextlib.contextmanager
    def acquire(self) -> Iterator[torch.device]:
        with self.acquire_slot() as slot:
            yield slot.device

    @contextlib.contextmanager
    def acquire_slot(self) -> Iterator[Slot]:
        slot = self._free.get()
        try:
            if slot.device.type == "cuda":
                with torch.cuda.device(slot.device), torch.cuda.stream(self._stream(slot)):
                    yield slot
            else:
                yield slot
        finally:
            self._free.put(slot)

    def _stream(self, slot: Slot) -> torch.cuda.Stream:
        # One stream per thread and GPU: a thread holds one slot at a time, and its kernels never
        # wait behind another pair's on the device's default stream. Keyed by the GPU too: a
        # thread whose next slot is on another GPU gets a stream there (a stream belongs to one
        # device; another device's would leave the work on the new device's legacy stream).
        key = (threading.get_ident(), str(slot.device))
        if key not in self._streams:
            self._streams[key] = torch.cuda.Stream(device=slot.device)
        return self._streams[key]


def pairs_per_gpu() -> int:
    """Pairs run at once on each GPU: ``NST_PAIRS_PER_GPU``; unset, a Dask worker's own thread
    count (``dask cuda worker --nthreads N``: the worker runs N tasks at once, so its pool has N
    slots, each given 1/N of the GPU's memory by the guard, not a share for pairs that never
    come); elsewhere 2."""
    value = PAIRS_PER_GPU.read()
    if value is None:
        threads = _dask_worker_threads()
        return threads if threads is not None and 1 <= threads <= MAX_PAIRS_PER_GPU else DEFAULT_PAIRS_PER_GPU
    return value


def _dask_worker_threads() -> int | None:
    """The thread count of the Dask worker this runs in, None outside one."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        worker = get_worker()
    except ValueError:  # not in a worker
        return None
    return int(getattr(getattr(worker, "state", worker), "nthreads", 0)) or None


def devices_for(setting: str) -> list[torch.device]:
    """``auto``: every visible GPU, else the CPU. ``cuda`` means every GPU; ``cpu`` and ``cuda:N`` one device."""
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    return [resolve_device(setting)]


_pools: dict[str, DevicePool] = {}
_lock = threading.Lock()


def device_pool(setting: str) -> DevicePool:
    with _lock:
        if setting not in _pools:
            _pools[setting] = DevicePool(devices_for(setting), pairs_per_gpu())
        return _pools[setting]
