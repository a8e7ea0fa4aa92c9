import pytest
import torch

from nst_core.device import configure_backends, prefers_channels_last


@pytest.fixture
def restore_backends():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    yield
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
     torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) = saved


def test_cuda_backends_are_set_for_speed_or_for_repeatability(restore_backends):
    # Only switches are set: no CUDA device is needed to check them.
    configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.conv.fp32_precision == "tf32" and torch.backends.cuda.matmul.fp32_precision == "tf32"
    configure_backends(torch.device("cuda"), deterministic=True)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.conv.fp32_precision == "ieee" and torch.backends.cuda.matmul.fp32_precision == "ieee"


def test_cpu_runs_change_no_switch(restore_backends):
    before = torch.backends.cuda.matmul.fp32_precision
    configure_backends(torch.device("cpu"))
    assert torch.backends.cuda.matmul.fp32_precision == before


def test_channels_last_only_on_cuda():
    assert prefers_channels_last(torch.device("cuda")) and not prefers_channels_last(torch.device("cpu"))
