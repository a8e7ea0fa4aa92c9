from dataclasses import replace

import pytest
import torch

from nst_batch.core import DeviceError, StyleConfig
from nst_batch.core.device import configure_backends, for_device, prefers_channels_last, resolve_precision


@pytest.fixture
def restore_backends():
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cuda.matmul.fp32_precision,
    )
    yield
    (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cuda.matmul.fp32_precision,
    ) = saved


def test_cuda_backends_are_set_for_speed_or_for_repeatability(restore_backends):
    # Only switches are set: no CUDA device is needed to check them.
    configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    # TF32 for the convolutions only: L-BFGS's history products stay IEEE fp32 on every device.
    assert torch.backends.cudnn.conv.fp32_precision == "tf32" and torch.backends.cuda.matmul.fp32_precision == "ieee"
    configure_backends(torch.device("cuda"), autotune=False)
    assert not torch.backends.cudnn.benchmark
    configure_backends(torch.device("cuda"), deterministic=True)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.conv.fp32_precision == "ieee" and torch.backends.cuda.matmul.fp32_precision == "ieee"


def test_cpu_runs_change_no_switch(restore_backends):
    before = torch.backends.cuda.matmul.fp32_precision
    configure_backends(torch.device("cpu"))
    assert torch.backends.cuda.matmul.fp32_precision == before


def test_channels_last_only_on_cuda():
    assert prefers_channels_last(torch.device("cuda")) and not prefers_channels_last(torch.device("cpu"))


@pytest.mark.parametrize(
    ("native", "asked", "settled"),
    [
        (True, "auto", "bf16"),
        (False, "auto", "fp32"),
        (True, "fp32", "fp32"),
        (False, "fp32", "fp32"),
        (True, "bf16", "bf16"),
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch, native, asked, settled):
    monkeypatch.setattr("nst_batch.core.device.bf16_is_native", lambda device: native)
    cfg = for_device(StyleConfig(precision=asked), torch.device("cpu"))
    assert cfg.precision == settled
    assert replace(cfg, precision=asked) == StyleConfig(precision=asked)  # nothing else changed


def test_auto_precision_stays_fp32_on_cuda_until_bf16_is_measured_there(monkeypatch):
    monkeypatch.setattr("nst_batch.core.device.bf16_is_native", lambda device: True)
    assert resolve_precision(torch.device("cuda"), "auto") == "fp32"


def test_explicit_bf16_is_refused_where_it_would_be_emulated_but_the_core_lets_it_run(monkeypatch):
    monkeypatch.setattr("nst_batch.core.device.bf16_is_native", lambda device: False)
    with pytest.raises(DeviceError, match="native bf16"):
        for_device(StyleConfig(precision="bf16"), torch.device("cpu"))
    assert for_device(StyleConfig(precision="bf16"), torch.device("cpu"), strict=False).precision == "bf16"
    assert for_device(StyleConfig(), torch.device("cpu"), strict=False).precision == "fp32"
