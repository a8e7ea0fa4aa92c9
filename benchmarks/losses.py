"""The two style losses side by side: Gram matrices (the paper's) against the sliced-Wasserstein
loss (``style_loss: swd``), with the same defaults and iteration budget, interleaved in one run.

    python -m benchmarks.losses [--sizes 256,512] [--pairs tubingen:starry_night,...] [--reps 1]
                                [--eval-reps 5] [--swd-iterations N1,N2] [--sheet docs/losses-contact-sheet.png]
                                [--device auto] [--json PATH]

For each pair and size, gram then swd (then gram, swd, ... with ``--reps``) on the same images;
per run: the wall time (style targets included), the iterations, and the judge's figures at the
output size and at 256 px: the content distance, the style gain (Gram distances) and the
distribution gain (sliced-Wasserstein distances along the judge's own directions, which neither
loss uses), all lower-is-more. Then one evaluation's time at the largest size for each loss
(objective and gradient, ``--eval-reps`` interleaved, medians) and the target's size in bytes at
512 and 2048 px. Writes a contact sheet, gram | swd for each pair at the largest size.
``--swd-iterations`` gives swd another budget (say the one that takes Gram's time), the
comparison at equal time rather than equal iterations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
from benchmarks.quality import DEFAULT_PAIRS, evaluation_times
from benchmarks.work import VIEW, contact_sheet, network, run_once, shared_pairs
from nst_batch.core import StyleConfig, compute_style_targets
from nst_batch.core.image_ops import resize_max_side
from nst_batch.core.quality import Evaluator
from nst_batch.core.vgg import VGGFeatures

LOSSES = ("gram", "swd")
EXTRA_PAIR = "golden_gate:seated-nude"  # a fourth pair: a cubist painting of flat planes, far from the photo's


def target_bytes(features: VGGFeatures, style: torch.Tensor) -> dict[str, dict[str, int]]:
    """A cache entry's tensors for each loss, by output size (every scale's side is in it)."""
    out: dict[str, dict[str, int]] = {}
    for loss in LOSSES:
        out[loss] = {}
        for size in (512, 2048):
            cfg = StyleConfig(size=size, style_loss=loss)
            # The tensors' size depends on the number of scales, not on the image: measure at 64 px
            # per side and count the sides (a 2048-px style image is not worth its minutes here).
            per_side = compute_style_targets(resize_max_side(style, 64), features, cfg, sides=[64]).nbytes
            out[loss][str(size)] = per_side * len(set(cfg.style_sides()))
    return out


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    device, features, machine = network(args.device)
    results: dict[str, Any] = {
        **machine,
        "defaults": StyleConfig().to_json(),
        "swd_iterations": args.swd_iterations,
        "pairs": {},
    }
    sheet: dict[str, dict[str, torch.Tensor]] = {}
    for pair, content, style in shared_pairs(args.images, args.pairs, device):
        evaluator = Evaluator(features, content, style)
        results["pairs"][pair] = {}
        for size in args.sizes:
            runs: dict[str, list[dict[str, Any]]] = {loss: [] for loss in LOSSES}
            for _ in range(args.reps):
                for loss in LOSSES:  # interleaved
                    cfg = StyleConfig(size=size, style_loss=loss)
                    if loss == "swd" and args.swd_iterations:
                        cfg = replace(cfg, iterations=tuple(args.swd_iterations))
                    run = run_once(features, content, style, cfg, evaluator)
                    print(
                        f"[losses] {pair} {size} px {loss}: {run['seconds']} s, iterations {run['iterations']}, "
                        f"{run['judged']}",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs[loss].append(run)
            if size == max(args.sizes):
                sheet[pair] = {loss: runs[loss][-1]["image"] for loss in LOSSES}
            for loss in runs:
                for run in runs[loss]:
                    run.pop("image")
            results["pairs"][pair][str(size)] = runs
        if pair == args.pairs.split(",")[0] and args.eval_reps > 0:
            configs = {loss: StyleConfig(size=max(args.sizes), style_loss=loss) for loss in LOSSES}
            results["evaluation_s"] = {
                str(max(args.sizes)): evaluation_times(features, content, style, configs, args.eval_reps)
            }
            results["target_bytes"] = target_bytes(features, style)
            print(
                f"[losses] evaluation at {max(args.sizes)} px: {results['evaluation_s']}; targets: "
                f"{results['target_bytes']}",
                file=sys.stderr,
                flush=True,
            )
    return results, sheet


def table(r: dict[str, Any]) -> str:
    lines = [
        "| pair | size | loss | s | iterations | content (own / at 256) | style gain (own / at 256) | distribution "
        "gain (own / at 256) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            for loss, reps in runs.items():
                last = reps[-1]
                own, at = last["judged"][size], last["judged"].get(str(VIEW), last["judged"][size])
                lines.append(
                    f"| {pair} | {size} | {loss} | {statistics.median(x['seconds'] for x in reps)} | "
                    f"{last['iterations']} | "
                    f"{own['content']} / {at['content']} | {own['style_gain']} / {at['style_gain']} | "
                    f"{own['swd_gain']} / {at['swd_gain']} |"
                )
    for size, t in r.get("evaluation_s", {}).items():
        lines.append(
            f"\none evaluation at {size} px: gram {t['gram']} s, swd {t['swd']} s ({t['swd'] / t['gram']:.2f}x)"
        )
    for loss, sizes in r.get("target_bytes", {}).items():
        lines.append(
            f"targets of one style, {loss}: " + ", ".join(f"{s} px {b / 2**20:.1f} MiB" for s, b in sizes.items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.losses", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--sizes", type=int_list, default=[256, 512])
    p.add_argument("--pairs", default=f"{DEFAULT_PAIRS},{EXTRA_PAIR}")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--eval-reps", type=int, default=5, help="0: no evaluation timing")
    p.add_argument(
        "--swd-iterations", type=int_list, default=None, help="swd's iteration budget (default: the same as gram's)"
    )
    p.add_argument("--sheet", type=Path, default=Path("docs/losses-contact-sheet.png"))
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results, sheet = measure(args)
    contact_sheet(sheet, args.sheet, names=LOSSES)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
