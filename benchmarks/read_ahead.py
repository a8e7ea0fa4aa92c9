"""Reading the next pairs while a window runs: seconds for a chunk of pairs through the real pair
pipeline (``run_pairs``), with the read-ahead and without, over an input store whose every read
of a photo or painting takes ``--latency`` seconds more (an S3 round trip to another region, a
busy NFS server), and with none. Generated photos, one at a time (``batch: 1``: a window per pair,
the CPU's case at these sizes); the modes interleaved rep by rep.

    python -m benchmarks.read_ahead --pairs 6 --size 128 --iterations 40 --latency 0,0.25 --reps 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import float_list, report
from nst_batch.tasks.output.storage.local import LocalStorage
from nst_batch.tasks.pair import pipeline
from nst_batch.tasks.planning.plan import load_plan


@contextlib.contextmanager
def _slow_inputs(latency: float) -> Iterator[None]:
    """Every read of a photo or painting (under photos/ or styles/) takes ``latency`` s more."""
    real = LocalStorage.read_bytes

    def slow(self: LocalStorage, uri: str) -> bytes:
        if "/photos/" in uri or "/styles/" in uri:
            time.sleep(latency)
        return real(self, uri)

    LocalStorage.read_bytes = slow  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalStorage.read_bytes = real  # type: ignore[method-assign]


@contextlib.contextmanager
def _read_ahead(on: bool) -> Iterator[None]:
    before = pipeline._ReadAhead.enabled
    pipeline._ReadAhead.enabled = on
    try:
        yield
    finally:
        pipeline._ReadAhead.enabled = before


def _collection(root: Path, pairs: int, size: int, iterations: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(pairs + 1):
        folder = root / ("styles" if i == pairs else "photos")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((size * 3 // 4, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / ("paint.png" if i == pairs else f"p{i:03d}.png"))
    manifest = root / "m.yaml"
    manifest.write_text(
        f"defaults: {{size: {size}, scales: [1.0], iterations: {iterations}}}\nbatch: 1\noutput: out\n"
        "styles: {paint: styles/paint.png}\ncontents: [photos/*.png]\n"
    )
    return manifest


def _once(args: argparse.Namespace, latency: float, ahead: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        plan = load_plan(str(_collection(Path(folder), args.pairs, args.size, args.iterations)))
        with _slow_inputs(latency), _read_ahead(ahead):
            began = time.perf_counter()
            rows = pipeline.run_pairs(plan.pairs, plan.settings)
            seconds = time.perf_counter() - began
    produced = sum(getattr(r, "status", None) == "produced" for r in rows)
    if produced != args.pairs:
        raise SystemExit(f"[read_ahead] only {produced} of {args.pairs} pairs were produced: {rows}")
    return seconds


def measure(args: argparse.Namespace) -> dict[str, Any]:
    _once(args, 0.0, True)  # the weights and the network loaded, not timed
    results: dict[str, Any] = {
        "pairs": args.pairs,
        "size": args.size,
        "iterations": args.iterations,
        "latency": {},
    }
    for latency in args.latency:
        modes: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.reps):
            for mode in modes:  # interleaved
                seconds = _once(args, latency, mode == "on")
                modes[mode].append(round(seconds, 2))
                print(f"[read_ahead] latency {latency} s, read-ahead {mode}: {seconds:.2f} s", file=sys.stderr)
        results["latency"][str(latency)] = {
            "seconds": modes,
            "median_s": {m: round(statistics.median(s), 2) for m, s in modes.items()},
        }
    return results


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['pairs']} pairs at {r['size']} px, {r['iterations']} iterations each",
        "| extra s per input read | read-ahead off, s (reps) | on, s (reps) | saved |",
        "|---|---|---|---|",
    ]
    for latency, row in r["latency"].items():
        off, on = row["median_s"]["off"], row["median_s"]["on"]
        lines.append(f"| {latency} | {off} {row['seconds']['off']} | {on} {row['seconds']['on']} | {off - on:.2f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.read_ahead", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--latency", type=float_list, default=[0.0, 0.25])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
