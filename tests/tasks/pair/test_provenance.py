"""What every output records of how it was made (nst_batch.tasks.pair.provenance), and the feature
networks shared across pairs (nst_batch.tasks.pair.networks)."""

from __future__ import annotations

import time

import torch

from nst_batch.core import StyleConfig
from nst_batch.core.config import ScaleReport, StylizeResult
from nst_batch.tasks.pair.networks import get_features, get_weights
from nst_batch.tasks.pair.provenance import device_description, library_versions, run_record, worker_address


def test_a_record_says_the_parameters_the_weights_the_result_the_device_and_the_versions():
    weights = get_weights("caffe", None)
    report = ScaleReport(
        height=20, width=30, iterations=4, max_iterations=5, stopped_early=True, losses={"total": 1.5}, seconds=0.1
    )
    result = StylizeResult(image=torch.zeros(1, 3, 20, 30), scales=(report,))
    record = run_record(StyleConfig(size=30), weights, result, torch.device("cpu"), time.perf_counter() - 1.0)
    assert record["parameters"]["size"] == 30 and record["weights"]["sha256"] == weights.sha256
    assert record["output_size"] == [30, 20] and record["iterations"] == 4 and record["final_losses"] == {"total": 1.5}
    assert record["scales"][0]["iterations"] == 4 and record["wall_time_s"] >= 1.0
    assert record["device"]["type"] == "cpu" and record["device"]["threads"] == torch.get_num_threads()
    assert {"python", "torch", "prefect"} <= set(library_versions())
    assert device_description(torch.device("cpu"))["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert worker_address() is None  # not on a Dask worker


def test_the_weights_and_a_feature_network_are_loaded_once_and_shared():
    assert get_weights("caffe", None) is get_weights("caffe", None)
    a = get_features("caffe", None, "relu2_1", "max", torch.device("cpu"))
    assert a is get_features("caffe", None, "relu2_1", "max", torch.device("cpu"))
    assert a is not get_features("caffe", None, "relu2_1", "avg", torch.device("cpu"))
