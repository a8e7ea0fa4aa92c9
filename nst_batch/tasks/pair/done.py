"""What an earlier run finished, and what a run will not do: a pair is skipped only once its
output checks out against its sidecar; a pair whose output root takes no more files is not run.
Free of PyTorch, so the flow imports it without the stylizer."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence

from PIL import Image

from nst_batch.core import StyleConfig
from nst_batch.tasks.basics import sha256_hex
from nst_batch.tasks.errors import TaskError
from nst_batch.tasks.output.storage import Storage, storage_for
from nst_batch.tasks.pair.image_files import HEADER_BYTES
from nst_batch.tasks.pair.records import PairRecord, PairRow, Status
from nst_batch.tasks.planning.jobs import BatchSettings, PairJob

# Output roots that took no more files in this process, with why: a later pair for them is not
# computed (its write would fail the same way after minutes of optimisation). Per process: with
# threads that is the whole run; each Dask worker learns it from its own first failed write.
_ROOTS_DOWN: dict[str, str] = {}
_ROOTS_LOCK = threading.Lock()
NOT_RUN = "not run: the output root takes no more files"


def root_down(root: str) -> str | None:
    with _ROOTS_LOCK:
        return _ROOTS_DOWN.get(root)


def mark_root_down(root: str, exc: BaseException) -> None:
    with _ROOTS_LOCK:
        _ROOTS_DOWN.setdefault(root, " ".join(str(exc).split()))


def reset_roots_down() -> None:
    """Forget the roots found down (a new run may find the disk freed)."""
    with _ROOTS_LOCK:
        _ROOTS_DOWN.clear()


def failed_row(pair: PairJob, settings: BatchSettings, reason: str) -> PairRow:
    """The summary's row of a pair that was not produced, and why (one line)."""
    return PairRow.of(pair, settings, Status.FAILED, reason=reason)


def shares_targets(cfg: StyleConfig) -> bool:
    """Whether a style's targets are independent of the content (not so for luminance matching)."""
    return not (cfg.preserve_color and cfg.match_luminance)


def sidecar_of_done(pair: PairJob, settings: BatchSettings) -> tuple[PairRecord | None, str]:
    """The pair's sidecar when it exists and the output checks out against it, else None, with
    the reason an existing output does not (it is then produced again)."""
    sidecar_uri, output_uri = settings.sidecar_uri(pair.name), settings.output_uri(pair.name)
    storage = storage_for(sidecar_uri)
    try:
        size = storage.size(output_uri)
        if size is None:
            return None, ""
        sidecar = PairRecord.from_json(json.loads(storage.read_bytes(sidecar_uri)))
        if sidecar is None:
            return None, ""
        problem = output_problem(storage, output_uri, size, sidecar, settings.verify)
    except (ValueError, FileNotFoundError, TaskError):
        return None, ""
    return (None, problem) if problem else (sidecar, "")


def output_problem(storage: Storage, uri: str, size: int, sidecar: PairRecord, verify: bool) -> str:
    """Why the output at ``uri`` is not the one its sidecar describes ('' when it is). By default
    its size and its header (a few kB: an image of the recorded size); ``verify``: its sha256 too.
    Measured on 10,000 tiny pairs: see docs/manifest.md, "Collections of any size"."""
    expected = sidecar.output_bytes
    if expected >= 0 and size != expected:
        return f"the output is {size:,} bytes, its sidecar says {expected:,}"
    try:
        head = storage.read_head(uri, HEADER_BYTES)
        with Image.open(io.BytesIO(head)) as image:
            shape = list(image.size)
    except Exception:
        return "the output does not decode as an image"
    recorded = sidecar.output_size
    if recorded and recorded != shape:
        return f"the output is {shape[0]}x{shape[1]}, its sidecar says {recorded[0]}x{recorded[1]}"
    if verify:
        if not sidecar.output_sha256 or sha256_hex(storage.read_bytes(uri)) != sidecar.output_sha256:
            return "the output's sha256 is not the one its sidecar records"
    return ""


def likely_done(pairs: Sequence[PairJob], settings: BatchSettings, force: bool) -> int:
    """How many pairs already have an output and a sidecar (one listing of the output root): a
    re-run most likely skips them, so the ETA leaves them out. Not a verdict: the skip itself is
    decided per pair (its inputs' hashes, its output's check)."""
    if force or not pairs:
        return 0
    try:
        present = set(storage_for(settings.output_root).list(settings.output_root))
    except TaskError:
        return 0
    return sum(settings.sidecar_uri(p.name) in present and settings.output_uri(p.name) in present for p in pairs)


def by_this_run(sidecar: PairRecord, settings: BatchSettings) -> bool:
    return bool(settings.run_id) and sidecar.run_id == settings.run_id


def written_by_this_run(pair: PairJob, settings: BatchSettings) -> PairRow | None:
    """The row of a pair whose task broke off (its worker died, the cluster went away) but which
    this run had already written, output and sidecar; None when it had not."""
    sidecar, _ = sidecar_of_done(pair, settings)
    return done_row(pair, sidecar, settings) if sidecar is not None and by_this_run(sidecar, settings) else None


def done_row(pair: PairJob, sidecar: PairRecord, settings: BatchSettings) -> PairRow:
    """A finished pair's row. Produced by this very run (a chunk that runs again after its Dask
    worker died finds the pairs its first attempt wrote): counted as produced, once, with the
    figures of that attempt; produced by an earlier run: skipped."""
    quality = sidecar.quality or None
    if not by_this_run(sidecar, settings):
        return PairRow.of(pair, settings, Status.SKIPPED, quality=quality)
    cache = sidecar.style_cache
    return PairRow.of(
        pair,
        settings,
        Status.PRODUCED,
        target_keys=[c.key for c in cache],
        computed_keys=[c.key for c in cache if not c.hit],
        final_losses=sidecar.final_losses or None,
        quality=quality,
        iterations=sidecar.iterations,
        wall_time_s=sidecar.wall_time_s,
        timings=sidecar.timings,
        worker=sidecar.worker,
    )
