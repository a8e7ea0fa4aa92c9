"""A whole batch from S3 to S3: manifest, contents (a prefix), styles and outputs on moto's server."""

import json

import boto3

from nst_batch.flows.stylize_batch import stylize_batch
from tests.flows.helpers import make_batch, upload_batch
from tests.s3_server import s3_server


def test_s3_round_trip_through_the_flow(prefect_server, tmp_path):
    make_batch(tmp_path)
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        upload_batch(s3, "photos", tmp_path, "s3://photos/out")

        state = stylize_batch(manifest="s3://photos/in/m.yaml", return_state=True)
        assert state.is_completed(), state.message
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="photos", Prefix="out/")["Contents"]}
        assert {"out/a__stripes.png", "out/a__stripes.json", "out/b__stripes.png", "out/summary.json", "out/index.html",
                "out/thumbs/a__stripes.jpg"} <= keys
        assert sum(k.startswith("out/.cache/style-targets/") for k in keys) == 1
        sidecar = json.loads(s3.get_object(Bucket="photos", Key="out/a__stripes.json")["Body"].read())
        assert sidecar["content"]["uri"] == "s3://photos/in/photos/a.png"
        assert sidecar["styles"][0]["uri"] == "s3://photos/in/styles/stripes.png"

        again = stylize_batch(manifest="s3://photos/in/m.yaml", return_state=True)
        assert again.is_completed()
        summary = json.loads(s3.get_object(Bucket="photos", Key="out/summary.json")["Body"].read())
        assert summary["counts"]["skipped"] == 2 and summary["style_targets"]["from_cache"] == 1
