"""The storage package's parts, each on its own: URIs (uris), the router (routing), and the three
implementations of one interface (protocol): local disk, memory, and S3 (boto3 against moto's
in-process mock, no server)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from nst_batch.tasks.output.storage.local import LocalStorage
from nst_batch.tasks.output.storage.memory import MemoryStorage
from nst_batch.tasks.output.storage.protocol import Storage
from nst_batch.tasks.output.storage.routing import mounted, reset_s3_client, storage_for
from nst_batch.tasks.output.storage.s3 import S3Storage
from nst_batch.tasks.output.storage.uris import (
    check_uri,
    climbs_out,
    glob_regex,
    join,
    resolve,
    split_s3,
    uri_problem,
)


def test_a_pattern_matches_whole_paths_with_star_inside_a_folder_and_doublestar_across():
    assert glob_regex("a/*.png").match("a/x.png") and not glob_regex("a/*.png").match("a/b/x.png")
    assert glob_regex("a/**/x.png").match("a/x.png") and glob_regex("a/**/x.png").match("a/b/c/x.png")
    assert glob_regex("a/?.png").match("a/1.png") and not glob_regex("a/?.png").match("a/12.png")
    assert glob_regex("[!b]*.jpg").match("a.jpg") and not glob_regex("[!b]*.jpg").match("b.jpg")
    assert not glob_regex("a.png").match("a.png.part")  # whole paths only
    assert glob_regex("(1).png").match("(1).png")  # regex characters in a name are literal
    assert isinstance(glob_regex("x"), re.Pattern)


def test_uris_are_parsed_strictly_and_relative_paths_stay_in_their_bucket():
    assert split_s3("s3://bucket/a/b.png") == ("bucket", "a/b.png")
    assert join("s3://bucket/out", "x.png") == "s3://bucket/out/x.png"
    for bad in ("s3:/bucket/x", "S3://bucket/x", "https://host/x", "s3://"):
        assert uri_problem(bad) is not None, bad
        with pytest.raises(Exception, match=re.escape(bad)):
            check_uri(bad)
    assert uri_problem("s3://bucket/x.png") is None and uri_problem("photos/a.png") is None
    assert uri_problem("a\x00b") is not None
    assert resolve("s3://bucket/m", "photos/a.png") == "s3://bucket/m/photos/a.png"
    assert resolve("s3://bucket/m", "s3://other/a.png") == "s3://other/a.png"
    assert climbs_out("s3://bucket/m", "../../x.png") is not None
    assert climbs_out("s3://bucket/m", "../x.png") is None  # still inside the bucket


def _exercise(storage: Storage, root: str) -> None:
    """What every implementation must do the same way."""
    a, b = join(root, "a.png"), join(root, "sub/b.json")
    storage.write_bytes(a, b"\x89PNG-data", "image/png")
    storage.write_bytes(b, b"{}", "application/json")
    assert storage.read_bytes(a) == b"\x89PNG-data" and storage.read_head(a, 4) == b"\x89PNG"
    assert storage.exists(a) and storage.size(a) == 9 and not storage.exists(join(root, "none"))
    assert sorted(storage.list(root)) == [a, b]
    assert storage.glob(join(root, "*.png")) == [a]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(join(root, "none"))
    storage.delete(a)
    assert not storage.exists(a) and storage.list(root) == [b]


def test_local_disk_does_what_the_interface_says(tmp_path: Path):
    storage = LocalStorage()
    _exercise(storage, str(tmp_path))
    assert storage.local_path(str(tmp_path / "x")) == str(tmp_path / "x")


def test_memory_does_what_the_interface_says():
    storage = MemoryStorage()
    _exercise(storage, "mem://t/out")
    assert storage.local_path("mem://t/out/x") is None


@pytest.fixture
def s3_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import boto3
    from moto import mock_aws

    aws = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bucket")
        yield client


def test_s3_does_what_the_interface_says(s3_client: object):
    storage = S3Storage(s3_client)
    _exercise(storage, "s3://bucket/out")
    assert storage.local_path("s3://bucket/out/x") is None
    assert storage.entry_kind("s3://bucket/out/", image_like=True) == "folder"


def test_the_router_sends_each_uri_to_its_storage_and_a_mount_only_while_mounted():
    reset_s3_client()
    assert isinstance(storage_for("/tmp/x.png"), LocalStorage)
    assert isinstance(storage_for("s3://bucket/x.png"), S3Storage)
    assert storage_for("s3://a/x") is storage_for("s3://b/y")  # one client per process
    memory = MemoryStorage()
    with mounted("mem://test", memory):
        assert storage_for("mem://test/x.png") is memory
    assert storage_for("mem://test/x.png") is not memory
    reset_s3_client()
