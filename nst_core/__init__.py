"""Neural style transfer after Gatys, Ecker & Bethge (CVPR 2016), in pure PyTorch.

Takes tensors and a frozen :class:`StyleConfig`, returns a tensor; never prints, never touches
files other than the VGG weights it is asked to load.
"""

from nst_core.config import ScaleReport, StepInfo, StyleConfig, StylizeResult
from nst_core.device import autocast, bf16_is_native, check_precision, configure_backends, resolve_device
from nst_core.errors import NonFiniteLossError, StylizeError, TargetsMismatchError
from nst_core.stylize import ProgressCallback, stylize
from nst_core.targets import (
    StyleTargets,
    TargetSpec,
    compute_style_targets,
    luminance_match_for,
    targets_from_bytes,
    targets_to_bytes,
)
from nst_core.vgg import LAYER_NAMES, Preprocessing, VGGFeatures, VGGWeights
from nst_core.weights import WeightsError, load_weights

__all__ = [
    "LAYER_NAMES",
    "NonFiniteLossError",
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
    "WeightsError",
    "autocast",
    "bf16_is_native",
    "check_precision",
    "compute_style_targets",
    "configure_backends",
    "load_weights",
    "luminance_match_for",
    "resolve_device",
    "stylize",
    "targets_from_bytes",
    "targets_to_bytes",
]
