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
        assert {
            "out/a__stripes.png",
            "out/a__stripes.json",
            "out/b__stripes.png",
            "out/summary.json",
            "out/index.html",
            "out/thumbs/a__stripes.jpg",
        } <= keys
        assert sum(k.startswith("out/.cache/style-targets/") for k in keys) == 1
        sidecar = json.loads(s3.get_object(Bucket="photos", Key="out/a__stripes.json")["Body"].read())
        assert sidecar["content"]["uri"] == "s3://photos/in/photos/a.png"
        assert sidecar["styles"][0]["uri"] == "s3://photos/in/styles/stripes.png"

        again = stylize_batch(manifest="s3://photos/in/m.yaml", return_state=True)
        assert again.is_completed()
        summary = json.loads(s3.get_object(Bucket="photos", Key="out/summary.json")["Body"].read())
        assert summary["counts"]["skipped"] == 2 and summary["style_targets"]["from_cache"] == 1


def test_an_s3_manifest_with_a_local_output_writes_there_and_names_outside_ascii_link_on_s3(
    prefect_server, tmp_path, monkeypatch
):
    """``nst run s3://.../m.yaml --output local-out`` writes to ./local-out, never to keys named
    after the local path; a photo named café is produced and linked in the gallery on S3."""
    from nst_batch.cli.main import main

    make_batch(tmp_path)
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        upload_batch(s3, "photos", tmp_path, "s3://photos/out")
        s3.upload_file(str(tmp_path / "photos" / "a.png"), "photos", "in/photos/café.png")
        monkeypatch.chdir(tmp_path)
        assert main(["run", "s3://photos/in/m.yaml", "--output", "local-out"]) == 0
        assert {"a__stripes.png", "café__stripes.png", "index.html"} <= {
            p.name for p in (tmp_path / "local-out").iterdir()
        }
        assert not [
            o["Key"] for o in s3.list_objects_v2(Bucket="photos").get("Contents", []) if "local-out" in o["Key"]
        ]

        state = stylize_batch(manifest="s3://photos/in/m.yaml", return_state=True)
        assert state.is_completed(), state.message
        page = s3.get_object(Bucket="photos", Key="out/index.html")["Body"].read().decode()
        assert 'href="caf%C3%A9__stripes.png"' in page and "no output file" not in page
        assert s3.head_object(Bucket="photos", Key="out/café__stripes.png")["ContentLength"] > 0
