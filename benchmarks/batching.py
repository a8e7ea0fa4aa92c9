"""Batched optimisation against one pair at a time: photos per second, same machine, interleaved.

The shared photos, brought to one shape (4:3 at each size), each with its own painting, at the
default parameters; targets are made first and not timed. Each rep runs the photos one at a
time (``stylize``), then in batches of each B (``stylize_batch``), so every mode sees the same
machine state. What decides ``batch: auto`` on this device: batching is kept only where it is
faster.

    python -m benchmarks.batching --images ../shared/images --sizes 128,256 --batches 2,4 --reps 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
from benchmarks.quality import DEFAULT_PAIRS
from benchmarks.work import network, shared_pairs
from nst_batch.core import StyleConfig, compute_style_targets, for_device, luminance_match_for, stylize, stylize_batch
from nst_batch.core.image_ops import resize

PAIRS = DEFAULT_PAIRS + ",tubingen:the_scream"  # four photos x paintings: batches of 2 and 4 divide them


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device, features, machine = network(args.device)
    loaded = list(shared_pairs(args.images, args.pairs, device))
    results: dict[str, Any] = {**machine, "pairs": [name for name, _, _ in loaded], "sizes": {}}
    for size in args.sizes:
        cfg = for_device(StyleConfig(size=size), device)
        shape = (size * 3 // 4, size)  # one bucket: every photo brought to 4:3 at this size
        photos = [resize(content, shape) for _, content, _ in loaded]
        targets = [
            [compute_style_targets(style, features, cfg, luminance_match=luminance_match_for(photo, cfg))]
            for photo, (_, _, style) in zip(photos, loaded, strict=True)
        ]
        modes: dict[str, list[float]] = {"alone": [], **{f"B={b}": [] for b in args.batches}}
        for _ in range(args.reps):
            for mode in modes:  # interleaved
                began = time.perf_counter()
                if mode == "alone":
                    for photo, own in zip(photos, targets, strict=True):
                        stylize(photo, features, cfg, targets=own)
                else:
                    b = int(mode[2:])
                    for start in range(0, len(photos), b):
                        stylize_batch(photos[start : start + b], features, cfg, targets[start : start + b])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - began
                modes[mode].append(round(seconds, 3))
                print(
                    f"[batching] {size} px {mode}: {seconds:.1f} s for {len(photos)} photos",
                    file=sys.stderr,
                    flush=True,
                )
        results["sizes"][str(size)] = {
            "shape": list(shape),
            "iterations": list(cfg.iterations_per_scale()),
            "seconds": modes,
            "photos_per_s": {m: round(len(photos) / statistics.median(s), 4) for m, s in modes.items()},
        }
    return results


def table(r: dict[str, Any]) -> str:
    lines = ["| size | shape | mode | s for the photos (reps) | photos/s | vs alone |", "|---|---|---|---|---|---|"]
    for size, row in r["sizes"].items():
        alone = row["photos_per_s"]["alone"]
        for mode, rate in row["photos_per_s"].items():
            lines.append(
                f"| {size} | {row['shape'][1]}x{row['shape'][0]} | {mode} | {row['seconds'][mode]} | {rate} | "
                f"{rate / alone:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batching", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--pairs", default=PAIRS)
    p.add_argument("--sizes", type=int_list, default=[128, 256])
    p.add_argument("--batches", type=int_list, default=[2, 4])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
