"""Choosing the task runner: what a missing optional dependency says."""

import importlib.util

import pytest
import torch

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.running.runners import make_task_runner


def test_dask_on_a_gpu_machine_without_dask_cuda_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dask_cuda" else real(name, *a))
    with pytest.raises(InputError) as caught:
        make_task_runner("dask")
    message = str(caught.value)
    assert "\n" not in message
    assert "needs dask-cuda" in message and "nst-batch[gpu]" in message and "-c constraints.txt" in message
