"""Which device each concurrent job runs on: a pool that hands out one device per job."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import torch

from nst_core import resolve_device


class DevicePool:
    """Devices checked out for the duration of one job, so two jobs never share a GPU."""

    def __init__(self, devices: list[torch.device]) -> None:
        self.devices = devices
        self._free: queue.Queue[torch.device] = queue.Queue()
        for d in devices:
            self._free.put(d)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[torch.device]:
        device = self._free.get()
        try:
            yield device
        finally:
            self._free.put(device)


def devices_for(setting: str) -> list[torch.device]:
    """``auto``: every visible GPU, else the CPU (one job at a time: PyTorch already uses all
    cores for one convolution). ``cuda`` means every GPU; ``cpu`` and ``cuda:N`` one device."""
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    return [resolve_device(setting)]


_pools: dict[str, DevicePool] = {}
_lock = threading.Lock()


def device_pool(setting: str) -> DevicePool:
    with _lock:
        if setting not in _pools:
            _pools[setting] = DevicePool(devices_for(setting))
        return _pools[setting]
