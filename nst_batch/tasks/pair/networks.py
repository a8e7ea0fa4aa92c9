"""VGG-19 feature networks, built once per process and reused across pairs."""

from __future__ import annotations

import threading
from functools import lru_cache

import torch

from nst_batch.core import VGGFeatures, VGGWeights, load_weights
from nst_batch.core.device import prefers_channels_last

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _weights(source: str, preprocessing: str | None) -> VGGWeights:
    return load_weights(source, preprocessing)


@lru_cache(maxsize=8)
def _features(
    source: str, preprocessing: str | None, last_layer: str, pooling: str, device: torch.device
) -> VGGFeatures:
    features = VGGFeatures(_weights(source, preprocessing), last_layer, pooling).to(device).eval()
    features = features.use_channels_last(prefers_channels_last(device))
    if device.type == "cuda":
        # The copy ran on this thread's stream; other pairs read the weights from streams of their own.
        torch.cuda.current_stream(device).synchronize()
    return features


def get_features(
    source: str, preprocessing: str | None, last_layer: str, pooling: str, device: torch.device
) -> VGGFeatures:
    """The feature network for these settings; loaded on first use, then shared (read-only)."""
    with _lock:  # two threads asking at once must not both load 80 MB of weights
        return _features(source, preprocessing, last_layer, pooling, device)


def get_weights(source: str, preprocessing: str | None) -> VGGWeights:
    with _lock:
        return _weights(source, preprocessing)
