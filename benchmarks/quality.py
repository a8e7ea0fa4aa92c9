"""Quality at every output size: the defaults on the shared pairs at two sizes, against a long
reference run, judged by one evaluator at the output size and at a common size.

    python -m benchmarks.quality [--sizes 512,1024] [--judge-size 512] [--reference-iterations 2000]
                                 [--pairs tubingen:starry_night,...] [--device auto] [--json PATH]

Per pair and size it prints the iterations each scale ran, the seconds, the content distance and
the style gain (the output's style distance over the content photo's own: lower is more style)
at the output size and downscaled to ``--judge-size`` (the size a gallery shows), and the same
for the reference: ``--reference-iterations`` per scale, no early stop. On a 2-core CPU keep it
to 256,512 px (a 512-px reference takes about an hour there); a GPU does 512,1024 (and 2048).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, write_json
from benchmarks.evaluator import Evaluator
from nst_core import StyleConfig, configure_backends, resolve_device, stylize
from nst_core.image_ops import fit_size, resize, resize_max_side
from nst_core.vgg import VGGFeatures
from nst_core.weights import load_caffe_weights

DEFAULT_PAIRS = "tubingen:starry_night,golden_gate:the_scream,brad_pitt:picasso_selfport1907"


def _image(folder: Path, stem: str) -> Path:
    found = sorted(p for p in folder.iterdir() if p.stem == stem)
    if not found:
        raise FileNotFoundError(f"no image named {stem}.* in {folder}")
    return found[0]


def judge(evaluator: Evaluator, image: torch.Tensor, content: torch.Tensor, judge_side: int) -> dict[str, float]:
    """Content distance and style gain of ``image`` at its own size and downscaled to ``judge_side``."""
    out: dict[str, float] = {}
    for label, side in (("own", max(image.shape[-2:])), ("judged", judge_side)):
        shown = resize_max_side(image, side) if side != max(image.shape[-2:]) else image
        photo = resize(content, tuple(shown.shape[-2:]))
        d, baseline = evaluator(shown), evaluator(photo)
        out[f"content_{label}"] = round(d.content, 4)
        out[f"style_gain_{label}"] = round(d.style / baseline.style, 4)
    return out


def run_once(features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, evaluator: Evaluator,
             judge_side: int) -> dict[str, Any]:
    device = content.device
    began = time.perf_counter()
    result = stylize(resize(content, fit_size(*content.shape[-2:], cfg.size)), features, cfg,
                     styles=[resize_max_side(style, cfg.size)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return {"iterations": [s.iterations for s in result.scales], "seconds": round(seconds, 1),
            "loss": result.final_losses.get("total"), **judge(evaluator, result.image, content, judge_side)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    configure_backends(device)
    features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
    images = Path(args.images)
    results: dict[str, Any] = {"device": str(device), "sizes": args.sizes, "judge_size": args.judge_size,
                               "reference_iterations": args.reference_iterations, "pairs": {}}
    from tasks.images import load_image

    for pair in args.pairs.split(","):
        content_stem, style_stem = pair.split(":")
        content = load_image(_image(images / "content", content_stem)).rgb.to(device)
        style = load_image(_image(images / "style", style_stem)).rgb.to(device)
        evaluator = Evaluator(features, content, style)
        rows: dict[str, Any] = {}
        for size in args.sizes:
            defaults = StyleConfig(size=size) if args.iterations is None else StyleConfig(size=size, iterations=(args.iterations,))
            row = {"defaults": run_once(features, content, style, defaults, evaluator, args.judge_size)}
            if args.reference_iterations:
                reference = replace(defaults, iterations=(args.reference_iterations,), early_stop_rtol=0.0)
                row["reference"] = run_once(features, content, style, reference, evaluator, args.judge_size)
            rows[str(size)] = row
            print(f"[quality] {pair} {size} px done", file=sys.stderr, flush=True)
        results["pairs"][pair] = rows
    return results


def table(r: dict[str, Any]) -> str:
    lines = [f"| pair | size | run | iterations per scale | s | content (own / at {r['judge_size']} px) | "
             f"style gain (own / at {r['judge_size']} px) | loss |", "|---|---|---|---|---|---|---|---|"]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            for name, x in runs.items():
                lines.append(f"| {pair} | {size} | {name} | {x['iterations']} | {x['seconds']} | {x['content_own']} / {x['content_judged']} | "
                             f"{x['style_gain_own']} / {x['style_gain_judged']} | {x['loss']:.4g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder with content/ and style/ (default ../shared/images)")
    p.add_argument("--sizes", type=int_list, default=[256, 512])
    p.add_argument("--judge-size", type=int, default=None, help="the common size outputs are judged at (default: the smallest size)")
    p.add_argument("--reference-iterations", type=int, default=2000, help="per scale, no early stop; 0 skips the reference")
    p.add_argument("--iterations", type=int, default=None, help="override the defaults' iterations per scale (for quick tries)")
    p.add_argument("--pairs", default=DEFAULT_PAIRS, help=f"content:style stems, comma-separated (default {DEFAULT_PAIRS})")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.judge_size = args.judge_size or min(args.sizes)
    results = measure(args)
    print(table(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
