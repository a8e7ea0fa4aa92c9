"""Neural style transfer after Gatys, Ecker & Bethge (CVPR 2016), in pure PyTorch.

Takes tensors and a frozen :class:`StyleConfig`, returns a tensor; never prints, never touches
files other than the VGG weights it is asked to load.

Names are imported on first use (PEP 562): ``from nst_batch.core import StyleConfig`` does not load
PyTorch, which keeps ``nst --help`` well under a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ScaleReport": "config",
    "StepInfo": "config",
    "StyleConfig": "config",
    "StylizeResult": "config",
    "WantsImages": "config",
    "with_images": "config",
    "autocast": "device",
    "bf16_is_native": "device",
    "configure_backends": "device",
    "for_device": "device",
    "resolve_device": "device",
    "resolve_precision": "device",
    "CaptureError": "errors",
    "ConfigError": "errors",
    "CoreError": "errors",
    "CorruptTargetsError": "errors",
    "DeviceError": "errors",
    "NonFiniteLossError": "errors",
    "ShapeError": "errors",
    "StylizeError": "errors",
    "TargetsMismatchError": "errors",
    "WeightsError": "errors",
    "GraphCache": "optimize",
    "ProgressCallback": "stylizer",
    "stylize": "stylizer",
    "stylize_batch": "stylizer",
    "StyleTargets": "targets",
    "TargetSpec": "targets",
    "compute_style_targets": "targets",
    "luminance_match_for": "targets",
    "targets_from_bytes": "targets",
    "targets_to_bytes": "targets",
    "LAYER_NAMES": "layers",
    "Preprocessing": "vgg",
    "VGGFeatures": "vgg",
    "VGGWeights": "vgg",
    "load_weights": "weights",
}

__all__ = [
    "CaptureError",
    "ConfigError",
    "CoreError",
    "CorruptTargetsError",
    "DeviceError",
    "GraphCache",
    "LAYER_NAMES",
    "NonFiniteLossError",
    "ShapeError",
    "Preprocessing",
    "ProgressCallback",
    "ScaleReport",
    "StepInfo",
    "StyleConfig",
    "StyleTargets",
    "StylizeError",
    "StylizeResult",
    "TargetSpec",
    "TargetsMismatchError",
    "VGGFeatures",
    "VGGWeights",
    "WantsImages",
    "WeightsError",
    "autocast",
    "bf16_is_native",
    "compute_style_targets",
    "configure_backends",
    "for_device",
    "load_weights",
    "luminance_match_for",
    "resolve_device",
    "resolve_precision",
    "stylize",
    "stylize_batch",
    "targets_from_bytes",
    "targets_to_bytes",
    "with_images",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nst_batch.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nst_batch.core.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from nst_batch.core.config import ScaleReport, StepInfo, StyleConfig, StylizeResult, WantsImages, with_images
    from nst_batch.core.device import (
        autocast,
        bf16_is_native,
        configure_backends,
        for_device,
        resolve_device,
        resolve_precision,
    )
    from nst_batch.core.errors import (
        CaptureError,
        ConfigError,
        CoreError,
        CorruptTargetsError,
        DeviceError,
        NonFiniteLossError,
        ShapeError,
        StylizeError,
        TargetsMismatchError,
        WeightsError,
    )
    from nst_batch.core.layers import LAYER_NAMES
    from nst_batch.core.optimize import GraphCache
    from nst_batch.core.stylizer import ProgressCallback, stylize, stylize_batch
    from nst_batch.core.targets import (
        StyleTargets,
        TargetSpec,
        compute_style_targets,
        luminance_match_for,
        targets_from_bytes,
        targets_to_bytes,
    )
    from nst_batch.core.vgg import Preprocessing, VGGFeatures, VGGWeights
    from nst_batch.core.weights import load_weights
