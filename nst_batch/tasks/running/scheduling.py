"""How the flow splits a plan into Prefect tasks: one style task per set of identical style
targets, and the pairs in chunks sized for the runner."""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

from nst_batch.tasks.pair.done import shares_targets
from nst_batch.tasks.planning.buckets import bucket_shape
from nst_batch.tasks.planning.jobs import BatchSettings, PairJob

# Pairs per chunk at least, where pairs may batch: a chunk's pairs are what a batch is made from
# (nst_batch.tasks.pair.pipeline.run_pairs), and 8 is what a GPU batches (AUTO_BATCH_GPU).
BATCH_CHUNK = 8

MAX_CHUNK = 64


def target_group(pair: PairJob, style_uri: str) -> tuple[object, ...] | None:
    """Pairs whose targets for a style are identical share one style task: the fields of the
    cache's key (``TargetSpec`` and the sides) that the plan knows. The weights are the run's; an
    ``auto`` precision is settled on the device that computes, so ``auto`` and the precision it
    becomes make two tasks of one cache key (the second finds the first's entry, or writes the
    same). Luminance-matched targets depend on the content and are made inside the pair task."""
    cfg = pair.config
    if not shares_targets(cfg):
        return None
    return (
        style_uri,
        cfg.style_sides(),
        tuple(cfg.style_layers),
        cfg.pooling,
        cfg.precision,
        cfg.tile_size,
        cfg.preserve_color,
    )


def chunk_size(pairs: int, workers: int) -> int:
    """Pairs per Prefect task. One task per pair costs ~20 ms of orchestration each (task run
    records, state changes, logs through the API) and grows Prefect's database by ~20 KB per pair
    per run; a collection of 10,000 pairs then spends minutes on Prefect alone. Chunks keep every
    worker busy with about 8 tasks each (so a slow chunk does not leave the others idle at the
    end), and at most 64 pairs, so progress and retries stay fine-grained."""
    return max(1, min(MAX_CHUNK, math.ceil(pairs / (max(1, workers) * 8))))


def chunks(pairs: list[PairJob], workers: int, buckets: Sequence[Hashable] | None = None) -> list[list[PairJob]]:
    """The pairs in chunks; with each pair's bucket (:func:`bucket_keys`), the pairs of one bucket
    side by side (in the order their buckets first appear) and at least ``BATCH_CHUNK`` a chunk,
    so that a chunk's pairs can form batches."""
    size = chunk_size(len(pairs), workers)
    if buckets is not None:
        first: dict[Hashable, int] = {}
        for key in buckets:
            first.setdefault(key, len(first))
        order = sorted(range(len(pairs)), key=lambda i: first[buckets[i]])  # stable: each bucket keeps its pairs' order
        pairs = [pairs[i] for i in order]
        size = max(size, min(MAX_CHUNK, BATCH_CHUNK))
    return [pairs[start : start + size] for start in range(0, len(pairs), size)]


def bucket_keys(pairs: Sequence[PairJob], settings: BatchSettings, threads: int = 16) -> list[Hashable] | None:
    """Each pair's batch bucket (its parameters and the shape bucket of its photo, from the photo's
    header: a few kB read per photo, 16 at a time), or None when the run does not batch (``batch:
    1``). A photo whose header does not say its size is a bucket of its own."""
    if settings.runtime.batch == 1:
        return None
    from nst_batch.tasks.output.storage import storage_for
    from nst_batch.tasks.pair.image_files import HEADER_BYTES, upright_size_from_header

    def key(pair: PairJob) -> Hashable:
        try:
            upright = upright_size_from_header(storage_for(pair.content_uri).read_head(pair.content_uri, HEADER_BYTES))
        except Exception:  # noqa: BLE001 - unreadable here: the pair says why when it runs
            upright = None
        if upright is None or pair.mask is not None:
            return ("alone", pair.name)
        width, height = upright
        return json.dumps(pair.config.to_json(), sort_keys=True), bucket_shape(height, width, pair.config.size)

    with ThreadPoolExecutor(max(1, min(threads, len(pairs)))) as pool:
        return list(pool.map(key, pairs))


def chunk_name(chunk: list[PairJob]) -> str:
    return (
        f"stylize {chunk[0].name}"
        if len(chunk) == 1
        else f"stylize {len(chunk)} pairs: {chunk[0].name} .. {chunk[-1].name}"
    )
