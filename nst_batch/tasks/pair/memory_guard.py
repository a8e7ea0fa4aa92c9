"""Refuse, before any work, a stylization that would not fit in memory.

The need is :func:`nst_batch.core.memory.estimate_memory`; the budget is ``NST_MAX_MEMORY`` when set
(``8G``, ``8GiB``, ``500M`` or bytes), else what the device has free: the GPU's free memory, or
the RAM available to this process (the smaller of the kernel's MemAvailable and the cgroup limit).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nst_batch.core import StyleConfig
from nst_batch.core.memory import estimate_memory, format_bytes, largest_batch, largest_size
from nst_batch.tasks.environment import MAX_MEMORY, byte_size, parsed
from nst_batch.tasks.errors import TooLargeError

ENV_VAR = MAX_MEMORY.name


def parse_bytes(text: str) -> int:
    return parsed(ENV_VAR, text, byte_size)


def memory_budget(device: torch.device, sharing: int = 1, held: int = 0) -> tuple[int, str]:
    """(bytes this run may use, where that figure comes from). ``sharing`` jobs run on the device at
    once: each may use its share of the GPU, and never more than is free now. ``held``: bytes this
    thread's kept CUDA graphs hold that the job runs in (nst_batch.tasks.pair.kept_graphs), free
    for it though the driver counts them taken."""
    configured = MAX_MEMORY.read()
    if configured is not None:
        return configured // sharing, f"{ENV_VAR}={os.environ[ENV_VAR].strip()}" + (
            f" shared by {sharing} pairs" if sharing > 1 else ""
        )
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        free += cached_here(device) + held
        share = f", a 1/{sharing} share" if sharing > 1 else ""
        return int(min(free, total // sharing)), f"free memory of {torch.cuda.get_device_name(device)}{share}"
    return available_ram(), "RAM available"


def cached_here(device: torch.device) -> int:
    """Bytes this process's caching allocator holds on ``device`` but no tensor uses: the driver
    counts them as taken, yet the next pair here gets them first (a second pair was refused for
    memory that the first had already freed into the cache)."""
    return max(0, torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def available_ram() -> int:
    candidates = [_meminfo_available()]
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        candidates.append(cgroup)
    return min(c for c in candidates if c is not None)


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cgroup_headroom() -> int | None:
    """cgroup v2 limit minus current use, for containers (a pod's limit is not in MemAvailable)."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def batch_limit(
    cfg: StyleConfig, height: int, width: int, device: torch.device, sharing: int = 1, held: int = 0
) -> int:
    """The most photos of ``height`` x ``width`` one batch may hold within this device's budget (at
    least 1: a photo that does not fit alone is refused by :func:`check_fits`, with its hints)."""
    budget, _ = memory_budget(device, sharing, held)
    return max(1, largest_batch(cfg, height, width, budget, device.type))


def check_fits(
    cfg: StyleConfig,
    content_height: int,
    content_width: int,
    device: torch.device,
    name: str,
    style_pixels: int | None = None,
    sharing: int = 1,
    batch: int = 1,
    held: int = 0,
) -> None:
    """Raise :class:`TooLargeError` when stylizing ``name`` with ``cfg`` would exceed the budget.
    ``style_pixels``: the largest style image's pixels at its largest size (None: assume square).
    ``batch``: photos of this shape optimised at once (the batch is what must fit). ``held``: as
    :func:`memory_budget` takes it."""
    estimate = estimate_memory(cfg, content_height, content_width, device.type, style_pixels, batch)
    budget, source = memory_budget(device, sharing, held)
    # The estimate includes the process's base (libraries, weights), which a running process has
    # already paid out of "RAM available": that errs by ~1 GiB on the side of refusing.
    if estimate.total <= budget:
        return
    aspect = max(content_height, content_width) / max(1, min(content_height, content_width))
    fits = largest_size(cfg, budget, aspect, device.type)
    optimisation = estimate.activations + estimate.transient + estimate.optimizer
    hints = [f"use size {fits} or less"]
    if estimate.style > optimisation:
        hints.append(f"a smaller style_scale (now {cfg.style_scale:g})")
    if cfg.optimizer == "lbfgs" and cfg.lbfgs_history > 10:
        hints.append(f"a smaller lbfgs_history (now {cfg.lbfgs_history})")
    if not cfg.tile_size:
        hints.append(f"tiles (tile_size {_tile_hint(cfg, budget, device)})")
    if batch > 1:
        raise TooLargeError(
            f"{name}: a batch of {batch} photos of {estimate.width}x{estimate.height} px needs about "
            f"{format_bytes(estimate.total)}, but {format_bytes(budget)} is available ({source}): set batch to "
            f"{batch_limit(cfg, content_height, content_width, device, sharing)} or less",
            settings=["batch"],
        )
    raise TooLargeError(
        f"{name}: a {estimate.width}x{estimate.height} px output needs about {format_bytes(estimate.total)} "
        f"({format_bytes(estimate.activations + estimate.transient)} network, {format_bytes(estimate.optimizer)} "
        f"optimiser, "
        f"{format_bytes(estimate.style)} style targets), but {format_bytes(budget)} is available ({source}); "
        + ", or ".join(hints),
        settings=["size", "style_scale", "lbfgs_history", "tile_size"],
    )


def _tile_hint(cfg: StyleConfig, budget: int, device: torch.device) -> int:
    """A tile size that leaves room for the whole image: the largest untiled size for half the budget."""
    return max(128, min(cfg.size - 1, largest_size(cfg, budget // 2, 1.0, device.type) // 64 * 64))
