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


def test_the_flows_runner_is_chosen_when_a_run_starts_not_when_the_flow_is_imported(monkeypatch):
    """A deployment's job variables set NST_TASK_RUNNER for the run; the flow module, imported
    before (by a worker, by `prefect deploy`), must not have settled the runner then."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from nst_batch.flows.stylize_batch import stylize_batch
    from nst_batch.tasks.running.cluster import ClusterTaskRunner

    monkeypatch.setenv("NST_TASK_RUNNER", "dask")
    monkeypatch.setenv("NST_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    chosen = stylize_batch.task_runner.duplicate()
    assert isinstance(chosen, ClusterTaskRunner) and chosen.address == "tcp://127.0.0.1:8786"
    monkeypatch.setenv("NST_TASK_RUNNER", "threads")
    assert isinstance(stylize_batch.task_runner.duplicate(), ThreadPoolTaskRunner)
