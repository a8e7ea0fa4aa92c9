import contextlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from benchmarks.dask_cluster import DaskCluster, dask_cluster
from tests.logs import assert_no_traceback
from tests.synthetic import painting_like, photo_like

TINY = "defaults: {size: 32, scales: [1.0], iterations: 2}\n"


def save(tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
    return path


def make_batch(root: Path, corrupt: bool = False) -> Path:
    """Two photos (plus a corrupt one if asked) x two paintings; returns the manifest path."""
    save(photo_like(48, 64), root / "photos" / "a.png")
    save(photo_like(48, 64, seed=5).flip(-1), root / "photos" / "b.png")
    if corrupt:
        (root / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save(painting_like(40, 40), root / "styles" / "stripes.png")
    save(painting_like(40, 40).flip(-1).roll(7, -1), root / "styles" / "waves.png")
    manifest = root / "m.yaml"
    manifest.write_text(
        TINY + "output: out\nstyles: {stripes: styles/stripes.png, waves: styles/waves.png}\ncontents: [photos/*.png]\n"
    )
    return manifest


def upload_batch(s3, bucket: str, root: Path, output: str) -> str:
    """Create ``bucket``, upload the photos and the stripes style of :func:`make_batch` under
    ``in/`` with a manifest whose contents are the ``in/photos/`` prefix; returns its URI."""
    s3.create_bucket(Bucket=bucket)
    for rel in ("photos/a.png", "photos/b.png", "styles/stripes.png"):
        s3.upload_file(str(root / rel), bucket, f"in/{rel}")
    manifest = (
        TINY + f"output: {output}\nstyles: {{stripes: styles/stripes.png}}\ncontents: [s3://{bucket}/in/photos/]\n"
    )
    s3.put_object(Bucket=bucket, Key="in/m.yaml", Body=manifest.encode())
    return f"s3://{bucket}/in/m.yaml"


@contextlib.contextmanager
def checked_cluster(root: Path, allowed: tuple[str, ...] | None = (), **options: object) -> Iterator[DaskCluster]:
    """:func:`benchmarks.dask_cluster.dask_cluster`, whose scheduler's and workers' logs must hold
    no traceback afterwards (except ``allowed`` ones, which the test provokes; None: the test kills
    the scheduler, and its workers' logs are then all connection errors, not checked)."""
    with dask_cluster(root, **options) as cluster:  # type: ignore[arg-type]
        yield cluster
    if allowed is None:
        return
    for log in sorted(root.glob("*.log")):
        assert_no_traceback(log, f"Dask {log.stem}", allowed)
