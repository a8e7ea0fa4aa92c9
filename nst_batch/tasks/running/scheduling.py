"""How the flow splits a plan into Prefect tasks: one style task per set of identical style
targets, and the pairs in chunks sized for the runner."""

from __future__ import annotations

import math

from nst_batch.tasks.pair.done import shares_targets
from nst_batch.tasks.planning.plan import PairJob

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
    return style_uri, cfg.style_sides(), tuple(cfg.style_layers), cfg.pooling, cfg.precision, cfg.tile_size, cfg.preserve_color


def chunk_size(pairs: int, workers: int) -> int:
    """Pairs per Prefect task. One task per pair costs ~20 ms of orchestration each (task run
    records, state changes, logs through the API) and grows Prefect's database by ~20 KB per pair
    per run; a collection of 10,000 pairs then spends minutes on Prefect alone. Chunks keep every
    worker busy with about 8 tasks each (so a slow chunk does not leave the others idle at the
    end), and at most 64 pairs, so progress and retries stay fine-grained."""
    return max(1, min(MAX_CHUNK, math.ceil(pairs / (max(1, workers) * 8))))


def chunks(pairs: list[PairJob], workers: int) -> list[list[PairJob]]:
    size = chunk_size(len(pairs), workers)
    return [pairs[start:start + size] for start in range(0, len(pairs), size)]


def chunk_name(chunk: list[PairJob]) -> str:
    return f"stylize {chunk[0].name}" if len(chunk) == 1 else f"stylize {len(chunk)} pairs: {chunk[0].name} .. {chunk[-1].name}"
