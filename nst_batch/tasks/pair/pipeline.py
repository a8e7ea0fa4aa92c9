"""The one pipeline that produces a chunk's pairs, from the plan to their written outputs and rows:
each pair's inputs read (a window ahead, while the window before it runs) and fingerprinted, skipped
when an earlier run made it, batched with pairs of its shape, produced (``produce``), written with
its thumbnails and sidecar. A pair's failure is its own (a failed batch's pairs run again alone).
The Prefect tasks (``nst_batch.tasks.running.prefect_tasks``) wrap :func:`run_pairs`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from nst_batch.core import GraphCache, ProgressCallback, StyleConfig, for_device
from nst_batch.tasks.basics import json_bytes, sha256_hex
from nst_batch.tasks.errors import OutputRootError, PairFailed
from nst_batch.tasks.output.layout import earlier_name, original_thumb, pair_thumb
from nst_batch.tasks.output.storage import storage_for
from nst_batch.tasks.pair.device_pool import device_pool
from nst_batch.tasks.pair.done import NOT_RUN, by_this_run, done_row, mark_root_down, root_down, sidecar_of_done
from nst_batch.tasks.pair.image_files import (
    ALPHA_FORMATS,
    HEADER_BYTES,
    OUTPUT_FORMATS,
    LoadedImage,
    encode_image,
    read_image_bytes,
    thumbnail,
    upright_size_from_header,
)
from nst_batch.tasks.pair.kept_graphs import counted_free_for_bucket, kept_graphs
from nst_batch.tasks.pair.masks import MAX_MASK_PIXELS, MaskInput
from nst_batch.tasks.pair.memory_guard import batch_limit
from nst_batch.tasks.pair.networks import get_weights
from nst_batch.tasks.pair.produce import ImageJob, Produced, decode_content, produce_images
from nst_batch.tasks.pair.provenance import PIPELINE_VERSION, run_record, worker_address
from nst_batch.tasks.pair.records import CacheUse, InputRecord, PairRecord, PairRow, Status
from nst_batch.tasks.pair.target_cache import TargetCache
from nst_batch.tasks.planning.buckets import bucket_shape, working_shape
from nst_batch.tasks.planning.jobs import BatchSettings, PairJob
from nst_batch.tasks.planning.runtime import RuntimeOptions

if TYPE_CHECKING:  # PyTorch itself is imported by the core, where a pair runs
    from torch import Tensor


def pair_fingerprint(
    content_sha: str,
    style_shas: list[str],
    params: dict[str, Any],
    settings: BatchSettings,
    weights_identity: str,
    mask: MaskInput | None = None,
) -> str:
    # PNG is lossless: its bytes do not depend on `quality`, so changing it redoes no PNG output
    # (the default stands in, which keeps the fingerprints of outputs made before this rule).
    quality = settings.runtime.quality if settings.format != "png" else RuntimeOptions().quality
    material = {
        "content": content_sha,
        "styles": style_shas,
        "params": params,
        "weights": weights_identity,
        "format": settings.format,
        "quality": quality,
        "v": PIPELINE_VERSION,
    }
    if mask is not None:  # only then: the fingerprints of pairs without one stay what they were
        material["mask"] = {"sha256": sha256_hex(mask.data), "styles": sorted(mask.styles.items())}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run_pair(
    pair: PairJob, settings: BatchSettings, force: bool = False, on_step: ProgressCallback | None = None
) -> PairRow:
    """Produce one pair (or skip it when its output is current). Raises :class:`PairFailed`."""
    outcome = run_pairs([pair], settings, force, [on_step])[0]
    if isinstance(outcome, PairFailed):
        raise outcome
    return outcome


def run_pairs(
    pairs: Sequence[PairJob],
    settings: BatchSettings,
    force: bool = False,
    on_steps: Sequence[ProgressCallback | None] = (),
    on_done: Callable[[int, PairRow | PairFailed], None] | None = None,
) -> list[PairRow | PairFailed]:
    """Produce (or skip) each pair; a row or the :class:`PairFailed` of each, in order, each also
    given to ``on_done`` (with its index) as it is known. Pairs that will run and can share a
    batch (see :func:`batches`) are optimised together; when a batch fails, its pairs run again
    one at a time, so that a failure is its own pair's and costs the others nothing but time.
    The pairs are read a window at a time (as many as a batch may hold), not all at once: a chunk
    of 64 large photos is not held in memory."""
    results: list[PairRow | PairFailed | None] = [None] * len(pairs)
    steps = list(on_steps) or [None] * len(pairs)

    def done(i: int, result: PairRow | PairFailed) -> None:
        results[i] = result
        if on_done is not None:
            on_done(i, result)

    size = _window(settings)
    # On a GPU, each scale's CUDA graph is kept for the next batch of its shape (batches of one
    # bucket come one after another, chunk after chunk on a thread): captured once per shape.
    graphs = kept_graphs()
    windows = [range(start, min(start + size, len(pairs))) for start in range(0, len(pairs), size)]
    with _ReadAhead(pairs, settings, force, steps) as reader:
        for window, prepared in reader.each(windows):
            ready: list[_Ready] = []
            index: dict[int, int] = {}
            for i, outcome in zip(window, prepared, strict=True):
                down = root_down(settings.output_root) if isinstance(outcome, _Ready) else None
                if down:  # found down while this window was read ahead: its pairs are not run either
                    outcome = PairFailed(f"{NOT_RUN} ({down})")
                if isinstance(outcome, _Ready):
                    ready.append(outcome)
                    index[id(outcome)] = i
                else:
                    done(i, outcome)
            for group in batches(ready, settings, graphs):
                for key, result in _run_batch(group, settings, force, graphs).items():
                    done(index[key], result)
    return [r for r in results if r is not None]


class _ReadAhead:
    """Each window's pairs prepared (inputs read and hashed, the done check) on a thread of its
    own while the window before it runs: on a GPU, or from S3, reading a window's photos took as
    long as a short optimisation, and the device waited. One window ahead at most (a window holds
    what a batch may), so memory holds two windows' bytes, never a whole chunk."""

    enabled: ClassVar[bool] = True  # off only to measure what it saves (benchmarks.read_ahead)

    def __init__(
        self, pairs: Sequence[PairJob], settings: BatchSettings, force: bool, steps: Sequence[ProgressCallback | None]
    ) -> None:
        self.pairs, self.settings, self.force, self.steps = pairs, settings, force, steps
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def each(self, windows: Sequence[range]) -> Iterator[tuple[range, list[PairRow | _Ready | PairFailed]]]:
        """Each window with its pairs prepared; the first here, each later one while the one
        before it is being used (a single window needs no thread)."""
        if self.enabled and len(windows) > 1:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="nst-read-ahead")
        ahead: Future[list[PairRow | _Ready | PairFailed]] | None = None
        for n, window in enumerate(windows):
            prepared = ahead.result() if ahead is not None else self._prepare(window)
            following = windows[n + 1] if n + 1 < len(windows) else None
            ahead = self.pool.submit(self._prepare, following) if self.pool and following else None
            yield window, prepared

    def _prepare(self, window: range) -> list[PairRow | _Ready | PairFailed]:
        out: list[PairRow | _Ready | PairFailed] = []
        for i in window:
            try:
                out.append(_prepare(self.pairs[i], self.settings, self.force, self.steps[i]))
            except PairFailed as exc:
                out.append(exc)
        return out


def _window(settings: BatchSettings) -> int:
    """Pairs read ahead: the most a batch may hold with this setting on this run's devices."""
    if settings.runtime.batch:
        return settings.runtime.batch
    return AUTO_BATCH_GPU if device_pool(settings.runtime.device).devices[0].type == "cuda" else AUTO_BATCH_CPU


@dataclass
class _Ready:
    """A pair that will run: its inputs read, its fingerprint made, what its summary row will say."""

    pair: PairJob
    redo: str
    content_bytes: bytes
    style_bytes: list[bytes]
    fingerprint: str
    mask: MaskInput | None
    on_step: ProgressCallback | None
    began: float
    prepared_s: float  # reading its inputs, its fingerprint, the done check (and decoding, ahead)
    upright: tuple[int, int] | None  # (width, height) as shown, from the photo's header; None: unknown
    decoded: LoadedImage | None = None  # the photo, decoded ahead (see decodes_ahead)
    decode_s: float = 0.0

    def job(self) -> ImageJob:
        return ImageJob(
            self.pair.content_uri,
            self.content_bytes,
            [(s.uri, b) for s, b in zip(self.pair.styles, self.style_bytes, strict=True)],
            on_step=self.on_step,
            mask=self.mask,
            decoded=self.decoded,
            decode_s=self.decode_s,
        )


def decodes_ahead(settings: BatchSettings) -> bool:
    """Whether a pair's photo is decoded when it is read (on the read-ahead thread, while the
    window before it runs) rather than in its batch: on a GPU, where decoding a camera photo took a
    tenth of a 512-px pair's time and the device waited for it. Not on a CPU: there decoding on
    another thread takes the cores the optimisation is using."""
    return device_pool(settings.runtime.device).devices[0].type == "cuda"


def _prepare(pair: PairJob, settings: BatchSettings, force: bool, on_step: ProgressCallback | None) -> PairRow | _Ready:
    """A pair's row when it is done already, else what it needs to run. Raises :class:`PairFailed`."""
    down = root_down(settings.output_root)
    if down:
        raise PairFailed(f"{NOT_RUN} ({down})")
    began = time.perf_counter()
    try:
        cfg = pair.config
        content_bytes = read_image_bytes(pair.content_uri, settings.runtime.max_pixels)
        style_bytes = [read_image_bytes(s.uri, settings.runtime.max_pixels) for s in pair.styles]
        mask = _read_mask(pair)
        weights = _weights_identity(settings)
        fingerprint = pair_fingerprint(
            sha256_hex(content_bytes), [sha256_hex(b) for b in style_bytes], cfg.to_json(), settings, weights, mask
        )
        previous, redo = sidecar_of_done(pair, settings)
        done = previous if previous is not None and previous.fingerprint == fingerprint else None
        if done is not None and (
            not force or by_this_run(done, settings)
        ):  # --force redoes earlier runs' work, not this run's
            return done_row(pair, done, settings)
        if previous is not None and done is None and settings.keep_earlier:
            keep_earlier(pair, settings, previous)
        decoded, decode_s = None, 0.0
        if decodes_ahead(settings):
            decoding = time.perf_counter()
            decoded = decode_content(content_bytes, pair.content_uri, cfg, settings.runtime)
            decode_s = time.perf_counter() - decoding
    except Exception as exc:
        raise _failed(exc, settings) from exc
    # An output that did not check out is produced again, and the summary says why (redone).
    return _Ready(
        pair,
        redo,
        content_bytes,
        style_bytes,
        fingerprint,
        mask,
        on_step,
        began,
        time.perf_counter() - began,
        upright_size_from_header(content_bytes[:HEADER_BYTES]),
        decoded,
        decode_s,
    )


def _failed(exc: Exception, settings: BatchSettings) -> PairFailed:
    """A pair's failure as one line for the summary (bad image, NaN loss, storage fault)."""
    if isinstance(exc, PairFailed):
        return exc
    if isinstance(exc, OutputRootError):
        mark_root_down(settings.output_root, exc)
    failed = PairFailed(" ".join(str(exc).split()) or type(exc).__name__)
    failed.__cause__ = exc
    return failed


def batches(ready: Sequence[_Ready], settings: BatchSettings, graphs: GraphCache | None = None) -> list[list[_Ready]]:
    """The pairs in groups optimised as one batch: pairs of one parameter set whose photos share a
    bucket (nst_batch.tasks.planning.buckets), at most :func:`batch_size` of them; a pair with a
    mask, in tiles, or whose photo's size its header does not say, runs alone. In the pairs'
    order otherwise (a bucket's batch starts where its first pair stands). ``graphs``: the
    thread's kept CUDA graphs, which :func:`batch_size` counts."""
    groups: dict[Any, list[list[_Ready]]] = {}
    limits: dict[Any, int] = {}  # one memory estimate per bucket, not per pair
    order: list[list[_Ready]] = []
    for r in ready:
        key = _bucket_key(r)
        if key is None:
            order.append([r])
            continue
        if key not in limits:
            limits[key] = batch_size(settings, r.pair.config, key[1], graphs)
        limit = limits[key]
        open_ = groups.setdefault(key, [])
        if open_ and len(open_[-1]) < limit:
            open_[-1].append(r)
        else:
            open_.append([r])
            order.append(open_[-1])
    return order


# batch: auto. On a GPU, 8 photos a batch (fewer where the memory guard says so): one 512-px
# photo does not fill an H100/H200, and 16 went through VGG-19 at 2.2 ms each against 3.8 ms
# alone (H200, fp32; measured before this code, which no GPU has run yet: see docs/performance.md).
# On a CPU only where batches measured faster (benchmarks/batching.py, 2-core Xeon, 2026-12-06):
# outputs of at most 128 px, 1.28x the photos per second with 4 a batch; at 256 px, 0.96-1.00x.
AUTO_BATCH_GPU = 8
AUTO_BATCH_CPU = 4
CPU_BATCH_MAX_SIDE = 128


def batch_size(
    settings: BatchSettings, cfg: StyleConfig, shape: tuple[int, int], graphs: GraphCache | None = None
) -> int:
    """How many photos of ``shape`` one batch holds: the run's ``batch`` setting (0: auto, above),
    never more than the device's memory holds. Kept CUDA graphs of this bucket count as free (its
    batches run in them); of another, they are dropped first (nst_batch.tasks.pair.kept_graphs)."""
    pool = device_pool(settings.runtime.device)
    device = pool.devices[0]
    wanted = settings.runtime.batch
    if wanted == 0:
        wanted = AUTO_BATCH_GPU if device.type == "cuda" else AUTO_BATCH_CPU if cfg.size <= CPU_BATCH_MAX_SIDE else 1
    if wanted <= 1:
        return 1
    cfg = for_device(cfg, device)
    held = counted_free_for_bucket(graphs, cfg, *shape, device) if graphs is not None else 0
    return min(wanted, batch_limit(cfg, *shape, device, pool.sharing(device), held))


def _bucket_key(r: _Ready) -> tuple[str, tuple[int, int]] | None:
    cfg = r.pair.config
    if r.mask is not None or r.upright is None:
        return None
    width, height = r.upright
    shape = bucket_shape(height, width, cfg.size)
    if any(cfg.tiled(*working_shape(*shape, side)) for side in cfg.sides()):
        return None
    return json.dumps(cfg.to_json(), sort_keys=True), shape


def _run_batch(
    group: list[_Ready], settings: BatchSettings, force: bool, graphs: GraphCache | None = None
) -> dict[int, PairRow | PairFailed]:
    """Each pair of ``group``'s row (or failure), from one batch; a failed batch's pairs run again alone."""
    if len(group) > 1:
        _started(group)
        try:
            made = produce_images(
                [r.job() for r in group],
                group[0].pair.config,
                settings.runtime,
                targets=TargetCache.of(settings),
                force=force,
                graphs=graphs,
            )
        except Exception:  # noqa: BLE001 - each pair runs again alone below, and fails (or not) on its own
            made = None
        if made is not None:
            return {id(r): _finish_or_fail(r, m, settings) for r, m in zip(group, made, strict=True)}
    out: dict[int, PairRow | PairFailed] = {}
    for r in group:
        _started([r])
        try:
            out[id(r)] = _finish_or_fail(
                r,
                produce_images(
                    [r.job()],
                    r.pair.config,
                    settings.runtime,
                    targets=TargetCache.of(settings),
                    force=force,
                    graphs=graphs,
                )[0],
                settings,
            )
        except Exception as exc:  # noqa: BLE001 - one line for the summary
            out[id(r)] = _failed(exc, settings)
    return out


def _started(group: Sequence[_Ready]) -> None:
    """The pairs' production starts now: their wall time counts their preparation and what follows,
    not the time they waited for the pairs prepared with them."""
    now = time.perf_counter()
    for r in group:
        r.began = now - r.prepared_s


def _finish_or_fail(r: _Ready, made: Produced, settings: BatchSettings) -> PairRow | PairFailed:
    try:
        return _finish(r, made, settings)
    except Exception as exc:  # noqa: BLE001 - one line for the summary
        return _failed(exc, settings)


def _read_mask(pair: PairJob) -> MaskInput | None:
    if pair.mask is None:
        return None
    return MaskInput(
        pair.mask.uri,
        read_image_bytes(pair.mask.uri, MAX_MASK_PIXELS),
        pair.mask.mapping(),
        tuple(s.name for s in pair.styles),
    )


def keep_earlier(pair: PairJob, settings: BatchSettings, sidecar: PairRecord) -> None:
    """Copy a pair's finished output and sidecar under ``earlier/`` before it is produced again
    with other parameters or inputs (copies, not moves: until the new ones are written, the pair
    still shows its last image). A copy that fails fails the pair, before any work: nothing is lost."""
    when = sidecar.finished_at
    for uri, extension in (
        (settings.output_uri(pair.name), settings.format),
        (settings.sidecar_uri(pair.name), "json"),
    ):
        kept = settings.layout.uri(earlier_name(pair.name, when, extension))
        try:
            storage_for(kept).write_bytes(kept, storage_for(uri).read_bytes(uri))
        except FileNotFoundError:
            continue
        except Exception as exc:
            raise PairFailed(f"keep_earlier: could not keep {uri} as {kept}: {' '.join(str(exc).split())}") from None


def _weights_identity(settings: BatchSettings) -> str:
    try:
        return get_weights(settings.runtime.weights, settings.runtime.weights_preprocessing).identity
    except Exception as exc:
        raise PairFailed(f"weights {settings.runtime.weights}: {exc}") from None


def _finish(r: _Ready, made: Produced, settings: BatchSettings) -> PairRow:
    """A produced pair's output, thumbnails and sidecar; its summary row."""
    pair, content_bytes, style_bytes, mask = r.pair, r.content_bytes, r.style_bytes, r.mask
    with made.timings("write"):
        written = _write_images(pair, settings, made.image, made.content)
    styles = [(s.name, s.uri, b) for s, b in zip(pair.styles, style_bytes, strict=True)]
    # A batch's pair counts its own phases and its share of the batch's: its wall time is what the
    # run spent on it (the ETA and the summary add these up), not the whole batch's.
    began = r.began if made.batch == 1 else time.perf_counter() - r.prepared_s - sum(made.timings.values())
    notes = input_notes(made.content, settings.format)
    sidecar = replace(
        pair_record(
            pair.name,
            settings.output_uri(pair.name),
            settings.format,
            written,
            pair.content_uri,
            content_bytes,
            styles,
            made,
            settings.runtime,
            began,
        ),
        fingerprint=r.fingerprint,
        mask=mask.record() if mask is not None else None,
        batch=made.batch,
        notes=notes,
        sweep=dict(pair.sweep),
        sweep_of=pair.sweep_of if pair.sweep else "",
        run_id=settings.run_id,
        manifest=settings.manifest,
        worker=worker_address(),
    )
    # The sidecar goes last: it is what marks the pair as done for a re-run.
    uri = settings.sidecar_uri(pair.name)
    storage_for(uri).write_bytes(uri, json_bytes(sidecar.to_json()), "application/json")
    # Which targets this pair used, and which it had to compute itself: the flow tells, from these
    # and its style tasks, which were made by this run and which came from an earlier one.
    return PairRow.of(
        pair,
        settings,
        Status.PRODUCED,
        redone=r.redo,
        notes=notes,
        quality=made.quality or None,
        target_keys=[o.key for o in made.outcomes],
        computed_keys=[o.key for o in made.outcomes if not o.hit],
        final_losses=made.result.final_losses,
        iterations=made.result.total_iterations,
        wall_time_s=sidecar.wall_time_s,
        timings=dict(made.timings),
        worker=sidecar.worker,
    )


def input_notes(content: LoadedImage, fmt: str) -> list[str]:
    """What the photo lost on its way to the output, one line each: its decode's notes (the first
    frame of several taken, the decoder's warnings) and its transparency where the format has none."""
    notes = list(content.notes)
    if content.alpha is not None and OUTPUT_FORMATS[fmt] not in ALPHA_FORMATS:
        notes.append(f"its transparency is flattened onto white: {fmt} holds no alpha (format png or webp keeps it)")
    return notes


def pair_record(
    name: str,
    output_uri: str,
    fmt: str,
    written: bytes,
    content_uri: str,
    content_bytes: bytes,
    styles: Sequence[tuple[str, str, bytes]],
    made: Produced,
    runtime: RuntimeOptions,
    began: float,
) -> PairRecord:
    """What a pair's sidecar records, and ``nst stylize --metadata`` in the same format: the
    output and its hash (a re-run's skip checks the output against them), the inputs and theirs,
    where the style targets came from, the run (parameters, weights, losses, device, versions),
    where its time went and when it finished. ``styles``: (name, URI, bytes) of each."""
    run = run_record(
        made.cfg, get_weights(runtime.weights, runtime.weights_preprocessing), made.result, made.device, began
    )
    return PairRecord(
        name=name,
        output=output_uri,
        output_bytes=len(written),
        output_sha256=sha256_hex(written),
        content=InputRecord(content_uri, sha256_hex(content_bytes), list(made.content.original_size)),
        styles=[InputRecord(u, sha256_hex(b), name=n) for n, u, b in styles],
        format=fmt,
        style_cache=[
            CacheUse(u, o.key, o.hit, o.rejected or "")
            for (_, u, _), o in zip(styles, made.outcomes, strict=True)
            if o.key
        ],
        **run,
        pipeline_version=PIPELINE_VERSION,
        quality=made.quality,
        timings=dict(made.timings),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _write_images(pair: PairJob, settings: BatchSettings, image: Tensor, content: LoadedImage) -> bytes:
    """The output, its thumbnail, and the photo's thumbnail (the gallery heads its rows with the
    photos, and its columns with the paintings, written where a style is decoded: small copies,
    rewritten by every pair that uses them)."""
    fmt = OUTPUT_FORMATS[settings.format]
    output_uri = settings.output_uri(pair.name)
    storage = storage_for(output_uri)
    data = encode_image(image, fmt, alpha=content.alpha, quality=settings.runtime.quality)
    storage.write_bytes(output_uri, data, f"image/{'jpeg' if fmt == 'JPEG' else fmt.lower()}")
    storage.write_bytes(settings.layout.uri(pair_thumb(pair.name)), thumbnail(image), "image/jpeg")
    storage.write_bytes(
        settings.layout.uri(original_thumb(pair.content_uri)), thumbnail(content.rgb, 160), "image/jpeg"
    )
    return data
