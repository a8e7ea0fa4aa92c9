"""The S3 server goes away in the middle of a batch: a clear error, nothing half-written, and a
re-run once it is back finishes the rest."""

from __future__ import annotations

import json

import boto3
import pytest
from PIL import Image

from nst_batch.flows.stylize_batch import stylize_batch
from nst_batch.tasks.output.storage import reset_s3_client
from tests.fault_proxy import Faults, fault_proxy
from tests.flows.helpers import make_batch, upload_batch
from tests.s3_server import s3_server


@pytest.mark.slow
def test_s3_gone_mid_run(prefect_server, tmp_path, monkeypatch):
    make_batch(tmp_path)
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        upload_batch(s3, "bkt", tmp_path, "s3://bkt/out")
        faults = Faults(down_when_key="out/a__stripes.json")  # gone right after the first pair's sidecar
        with fault_proxy(endpoint, faults) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
            monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
            reset_s3_client()
            state = stylize_batch(manifest="s3://bkt/in/m.yaml", return_state=True)
        assert state.is_failed()
        summary = state.result(raise_on_failure=False)  # the summary comes back though it could not be written
        assert summary["counts"] == {"planned": 2, "produced": 1, "skipped": 0, "failed": 1}
        assert any(
            w.startswith("summary.json was not written: s3://bkt/out/summary.json: cannot write")
            for w in summary["warnings"]
        )

        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bkt", Prefix="out/").get("Contents", [])}
        assert "out/a__stripes.png" in keys and "out/a__stripes.json" in keys
        assert "out/b__stripes.json" not in keys
        for key in keys:  # whatever is there is whole
            body = s3.get_object(Bucket="bkt", Key=key)["Body"].read()
            if key.endswith(".png"):
                Image.open(__import__("io").BytesIO(body)).load()
            elif key.endswith(".json"):
                json.loads(body)

        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # the server is back
        reset_s3_client()
        again = stylize_batch(manifest="s3://bkt/in/m.yaml", return_state=True)
        assert again.is_completed(), again.message
        summary = json.loads(s3.get_object(Bucket="bkt", Key="out/summary.json")["Body"].read())
        assert summary["counts"]["skipped"] == 1 and summary["counts"]["produced"] == 1
        reset_s3_client()
