"""S3 faults injected between boto3 and moto's server: retried when transient, a clear error when
not, and nothing half-written."""

import os

import boto3
import pytest

from nst_batch.tasks.output.storage import StorageError, reset_s3_client, storage_for
from tests.fault_proxy import Faults, fault_proxy
from tests.s3_server import s3_server


@pytest.fixture(scope="module")
def moto_endpoint():
    with s3_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bucket")
        yield endpoint


@pytest.fixture
def proxied(moto_endpoint, monkeypatch):
    faults = Faults()
    with fault_proxy(moto_endpoint, faults) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
        reset_s3_client()
        yield faults
    reset_s3_client()


@pytest.mark.parametrize("status, code", [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable")])
def test_transient_faults_are_retried(proxied, moto_endpoint, status, code):
    proxied.fail_first, proxied.status, proxied.code = 2, status, code
    storage = storage_for("s3://bucket/x")
    storage.write_bytes("s3://bucket/retry/a.bin", b"payload")
    assert len([r for r in proxied.seen if r.startswith("PUT")]) == 3  # two faults, then success
    assert (
        boto3.client("s3", endpoint_url=moto_endpoint).get_object(Bucket="bucket", Key="retry/a.bin")["Body"].read()
        == b"payload"
    )
    proxied.fail_first = 2
    assert storage.read_bytes("s3://bucket/retry/a.bin") == b"payload"


def test_persistent_faults_end_in_a_clear_error(proxied, moto_endpoint):
    proxied.fail_first = 100
    with pytest.raises(StorageError, match=r"s3://bucket/never/a.bin: cannot write: SlowDown"):
        storage_for("s3://bucket/x").write_bytes("s3://bucket/never/a.bin", b"payload")
    assert len(proxied.seen) == 4  # AWS_MAX_ATTEMPTS
    keys = (
        boto3.client("s3", endpoint_url=moto_endpoint).list_objects_v2(Bucket="bucket", Prefix="never/").get("KeyCount")
    )
    assert keys == 0  # nothing half-written


def test_access_denied_is_not_retried(proxied):
    proxied.deny_prefix = "bucket/secret"
    with pytest.raises(StorageError, match="s3://bucket/secret/a.png: cannot read: AccessDenied"):
        storage_for("s3://bucket/x").read_bytes("s3://bucket/secret/a.png")
    assert len(proxied.seen) == 1


def test_server_gone(proxied):
    proxied.down = True
    with pytest.raises(StorageError, match="s3://bucket/k: cannot read"):
        storage_for("s3://bucket/x").read_bytes("s3://bucket/k")
    assert len(proxied.seen) == int(os.environ["AWS_MAX_ATTEMPTS"])
