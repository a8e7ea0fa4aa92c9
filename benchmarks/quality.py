"""Quality at every output size: the defaults on the shared pairs at each size, against a long
reference run, judged by one evaluator at the output size and downscaled to each smaller size.

    python -m benchmarks.quality [--sizes 512,1024,2048] [--reference-iterations 2000] [--coarse-size 256]
                                 [--pairs tubingen:starry_night,...] [--images-out DIR] [--device auto] [--json PATH]

Per pair and size it prints the scales and the iterations each ran, the seconds, the final loss,
the content distance and the style gain (the output's style distance over the content photo's
own: lower is more style) at the output size and downscaled to the smallest size (the size a
gallery shows), and the same for the reference: ``--reference-iterations`` per scale, no early
stop. Then the issue's targets: a 2x output judged at the smaller size against the smaller output,
and the defaults' loss against the reference's. On a 2-core CPU keep it to 256,512 px (a 512-px
reference of 2000 iterations per scale takes about an hour there); a GPU does 512,1024,2048.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
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


def judge(evaluator: Evaluator, image: torch.Tensor, content: torch.Tensor, sides: list[int]) -> dict[str, Any]:
    """Content distance and style gain of ``image`` at its own size and downscaled to each of
    ``sides`` below it (the sizes a gallery shows it at)."""
    own = max(image.shape[-2:])
    out: dict[str, Any] = {}
    for side in sorted({own, *(s for s in sides if s < own)}, reverse=True):
        shown = resize_max_side(image, side) if side != own else image
        photo = resize(content, tuple(shown.shape[-2:]))
        d, baseline = evaluator(shown), evaluator(photo)
        out[str(side)] = {"content": round(d.content, 4), "style_gain": round(d.style / baseline.style, 4)}
    return out


def run_once(features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, evaluator: Evaluator,
             sides: list[int]) -> dict[str, Any]:
    device = content.device
    began = time.perf_counter()
    result = stylize(resize(content, fit_size(*content.shape[-2:], cfg.size)), features, cfg,
                     styles=[resize_max_side(style, cfg.size)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return {"sides": list(cfg.sides()), "iterations": [s.iterations for s in result.scales],
            "stopped_early": [s.stopped_early for s in result.scales], "seconds": round(seconds, 1),
            "loss": result.final_losses.get("total"), "judged": judge(evaluator, result.image, content, sides),
            "image": result.image}


def _save(run: dict[str, Any], folder: Path | None, name: str) -> dict[str, Any]:
    """The run without its image, which goes to ``folder/name.png`` (for looking at)."""
    image = run.pop("image")
    if folder is not None:
        from tasks.images import encode_image

        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(encode_image(image, "PNG"))
    return run


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    configure_backends(device)
    features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
    images = Path(args.images)
    results: dict[str, Any] = {"device": str(device), "sizes": args.sizes, "coarse_size": args.coarse_size,
                               "reference_iterations": args.reference_iterations, "pairs": {}}
    from tasks.images import load_image

    for pair in args.pairs.split(","):
        content_stem, style_stem = pair.split(":")
        content = load_image(_image(images / "content", content_stem)).rgb.to(device)
        style = load_image(_image(images / "style", style_stem)).rgb.to(device)
        evaluator = Evaluator(features, content, style)
        rows: dict[str, Any] = {}
        for size in args.sizes:
            defaults = StyleConfig(size=size, coarse_size=args.coarse_size)
            if args.iterations:
                defaults = replace(defaults, iterations=tuple(args.iterations))
            runs = {"defaults": defaults}
            if args.reference_iterations:
                runs["reference"] = replace(defaults, iterations=(args.reference_iterations,), early_stop_rtol=0.0)
            rows[str(size)] = {name: _save(run_once(features, content, style, cfg, evaluator, args.sizes), args.images_out,
                                           f"{content_stem}__{style_stem}_{size}_{name}") for name, cfg in runs.items()}
            print(f"[quality] {pair} {size} px done", file=sys.stderr, flush=True)
        results["pairs"][pair] = rows
    return results


def table(r: dict[str, Any]) -> str:
    """One row per pair, size and run; the distances at the output size / downscaled to the smallest size."""
    small = min(r["sizes"])
    lines = [f"| pair | size | run | scales, px | iterations | s | content (own / at {small} px) | "
             f"style gain (own / at {small} px) | loss |", "|---|---|---|---|---|---|---|---|---|"]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            for name, x in runs.items():
                own, at = x["judged"][size], x["judged"][str(small)]
                lines.append(f"| {pair} | {size} | {name} | {x['sides']} | {x['iterations']} | {x['seconds']} | "
                             f"{own['content']} / {at['content']} | {own['style_gain']} / {at['style_gain']} | {x['loss']:.4g} |")
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> str:
    """The issue's targets per pair: a 2x output judged at the smaller size against the smaller
    output (within 10 %), and the defaults' loss against the reference's (within 2 %)."""
    lines = ["| pair | check | figure | target |", "|---|---|---|---|"]
    for pair, sizes in r["pairs"].items():
        for size in r["sizes"]:
            big = sizes.get(str(2 * size), {}).get("defaults")
            if big is not None:
                small = sizes[str(size)]["defaults"]["judged"][str(size)]
                at = big["judged"][str(size)]
                for key in ("style_gain", "content"):
                    lines.append(f"| {pair} | {2 * size} px at {size} px vs {size} px: {key} | {at[key] / small[key] - 1:+.1%} | within 10 % |")
        for size, runs in sizes.items():
            if "reference" in runs:
                d, ref = runs["defaults"], runs["reference"]
                lines.append(f"| {pair} | {size} px loss vs reference ({sum(ref['iterations'])} its) | {d['loss'] / ref['loss'] - 1:+.2%} "
                             f"in {sum(d['iterations'])} iterations | within 2 % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder with content/ and style/ (default ../shared/images)")
    p.add_argument("--sizes", type=int_list, default=[256, 512])
    p.add_argument("--coarse-size", type=int, default=StyleConfig().coarse_size, help="the defaults' first scale, px")
    p.add_argument("--reference-iterations", type=int, default=2000, help="per scale, no early stop; 0 skips the reference")
    p.add_argument("--iterations", type=int_list, default=None, help="override the defaults' iterations per scale, N1,N2,... (for quick tries)")
    p.add_argument("--images-out", type=Path, default=None, help="write every output here as PNG, to look at")
    p.add_argument("--pairs", default=DEFAULT_PAIRS, help=f"content:style stems, comma-separated (default {DEFAULT_PAIRS})")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args)
    return report(f"{table(results)}\n\n{targets(results)}", results, args.json)


if __name__ == "__main__":
    sys.exit(main())
