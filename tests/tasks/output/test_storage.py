"""Local and S3 storage; S3 against moto's server on 127.0.0.1 over HTTP."""

import boto3
import pytest

from nst_batch.tasks.output.storage import LocalStorage, StorageError, join, split_s3, storage_for
from tests.s3_server import s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bucket")
        yield client


def test_local_round_trip_is_atomic(tmp_path):
    storage = LocalStorage()
    uri = join(str(tmp_path), "a", "b.bin")
    storage.write_bytes(uri, b"data")
    assert storage.read_bytes(uri) == b"data" and storage.exists(uri)
    assert storage.list(str(tmp_path)) == [uri]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]
    storage.delete(uri)
    assert not storage.exists(uri)
    with pytest.raises(FileNotFoundError, match="no such file"):
        storage.read_bytes(uri)


def test_s3_round_trip(s3):
    storage = storage_for("s3://bucket/x")
    storage.write_bytes("s3://bucket/out/a.png", b"png", "image/png")
    storage.write_bytes("s3://bucket/out/sub/b.json", b"{}")
    assert storage.read_bytes("s3://bucket/out/a.png") == b"png"
    assert s3.head_object(Bucket="bucket", Key="out/a.png")["ContentType"] == "image/png"
    assert storage.exists("s3://bucket/out/a.png") and not storage.exists("s3://bucket/out/zzz")
    assert storage.list("s3://bucket/out") == ["s3://bucket/out/a.png", "s3://bucket/out/sub/b.json"]
    assert storage.glob("s3://bucket/out/*.png") == ["s3://bucket/out/a.png"]
    storage.delete("s3://bucket/out/a.png")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("s3://bucket/out/a.png")


def test_s3_missing_bucket_is_a_clear_error(s3):
    with pytest.raises(StorageError, match="s3://no-such-bucket/k: cannot write: NoSuchBucket"):
        storage_for("s3://no-such-bucket/k").write_bytes("s3://no-such-bucket/k", b"x")


def test_s3_uri_parsing():
    assert split_s3("s3://bkt/k/e/y") == ("bkt", "k/e/y")
    assert join("s3://b/prefix/", "x", "/y.png") == "s3://b/prefix/x/y.png"
    with pytest.raises(ValueError):
        split_s3("s3:///key")


def test_a_pair_is_produced_skipped_and_shown_on_a_storage_in_memory():
    """Task tests need neither a disk nor a server: every read and write of a pair, its style
    targets, its sidecar and the gallery goes through the storage its URI routes to."""
    import io

    from PIL import Image

    from nst_batch.core import StyleConfig
    from nst_batch.tasks.output.storage import MemoryStorage, mounted
    from nst_batch.tasks.pair.pipeline import run_pair
    from nst_batch.tasks.planning.jobs import BatchSettings, PairJob, StyleRef
    from nst_batch.tasks.planning.runtime import RuntimeOptions
    from nst_batch.tasks.presenting.gallery import build_gallery
    from tests.synthetic import painting_like, photo_like

    def png(tensor) -> bytes:
        out = io.BytesIO()
        Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(out, "PNG")
        return out.getvalue()

    with mounted("mem://", MemoryStorage()) as mem:
        mem.write_bytes("mem://b/in/a.png", png(photo_like(48, 64)))
        mem.write_bytes("mem://b/in/s.png", png(painting_like(40, 40)))
        settings = BatchSettings("mem://b/out", "png", RuntimeOptions(device="cpu"))
        pair = PairJob(
            "a__s",
            "mem://b/in/a.png",
            (StyleRef("s", "mem://b/in/s.png"),),
            StyleConfig(size=32, scales=(1.0,), iterations=(2,)),
        )
        assert run_pair(pair, settings).status == "produced"
        written = set(mem.objects)
        assert {"mem://b/out/a__s.png", "mem://b/out/a__s.json", "mem://b/out/thumbs/a__s.jpg"} <= written
        assert [u for u in written if u.startswith("mem://b/out/.cache/style-targets/")]
        assert run_pair(pair, settings).status == "skipped"  # its output checked against its sidecar, in memory
        assert build_gallery("mem://b/out") == "mem://b/out/index.html"
        page = mem.objects["mem://b/out/index.html"].decode()
        assert 'href="a__s.png"' in page and 'src="thumbs/a__s.jpg"' in page and 'href="a__s.json"' in page
