"""Quality at every output size: the defaults on the shared pairs at each size, against a long
reference run, judged by one evaluator at the output size and downscaled to each smaller size.

    python -m benchmarks.quality [--sizes 512,1024,2048] [--reference-iterations 2000] [--coarse-size 256]
                                 [--baseline] [--precisions fp32,bf16] [--iterations N1,N2]
                                 [--pairs tubingen:starry_night,...] [--images-out DIR] [--device auto] [--json PATH]

Per pair and size it prints the scales and the iterations each ran, the seconds, the final loss,
the content distance and the style gain (the output's style distance over the content photo's
own: lower is more style) at the output size and downscaled to the smallest size (the size a
gallery shows), and the same for the reference: ``--reference-iterations`` per scale, no early
stop. Then the issue's targets: a 2x output judged at the smaller size against the smaller output,
and the defaults' loss against the reference's (every loss is computed in fp32 on the output, so
runs in either precision compare). ``--baseline`` also runs main's defaults from before the CPU
speed issue (fp32, 500 + 150 iterations, the 0.25 % plateau) in the same process and prints the
defaults' wall time and distances as ratios of its. ``--precisions fp32,bf16`` runs the defaults
once in each precision instead, and prints one evaluation's time and the distances side by side.
On a 2-core CPU keep it to 256,512 px (a 512-px reference of 2000 iterations per scale takes
about an hour there); a GPU does 512,1024,2048.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
from benchmarks.evaluator import Evaluator
from nst_batch.core import StyleConfig, compute_style_targets, configure_backends, for_device, resolve_device, stylize
from nst_batch.core.image_ops import fit_size, resize, resize_max_side
from nst_batch.core.quality import judge
from nst_batch.core.stylizer import scale_objective
from nst_batch.core.vgg import VGGFeatures
from nst_batch.core.weights import load_caffe_weights

DEFAULT_PAIRS = "tubingen:starry_night,golden_gate:the_scream,brad_pitt:picasso_selfport1907"
# main's defaults before the CPU speed issue (2026-12-02): --baseline runs them beside today's.
BASELINE: dict[str, Any] = {
    "iterations": (500, 150),
    "early_stop_rtol": 2.5e-3,
    "early_stop_window": 50,
    "precision": "fp32",
}


def _image(folder: Path, stem: str) -> Path:
    found = sorted(p for p in folder.iterdir() if p.stem == stem)
    if not found:
        raise FileNotFoundError(f"no image named {stem}.* in {folder}")
    return found[0]


def fp32_loss(
    features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, image: torch.Tensor
) -> float:
    """``image``'s loss under ``cfg``'s objective at the output size, computed in fp32: the same
    yardstick for runs made in fp32 and bf16."""
    cfg = replace(cfg, precision="fp32")
    targets = [compute_style_targets(style, features, cfg)]
    _, objective = scale_objective(content, features, cfg, targets)
    with torch.no_grad():
        total, _ = objective(image)
    return float(total)


def run_once(
    features: VGGFeatures,
    content: torch.Tensor,
    style: torch.Tensor,
    cfg: StyleConfig,
    evaluator: Evaluator,
    sides: list[int],
) -> dict[str, Any]:
    device = content.device
    scaled, style = resize(content, fit_size(*content.shape[-2:], cfg.size)), resize_max_side(style, cfg.size)
    began = time.perf_counter()
    result = stylize(scaled, features, cfg, styles=[style])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return {
        "sides": list(cfg.sides()),
        "iterations": [s.iterations for s in result.scales],
        "stopped_early": [s.stopped_early for s in result.scales],
        "seconds": round(seconds, 1),
        "precision": for_device(cfg, device).precision,
        "loss": fp32_loss(features, scaled, style, cfg, result.image),
        "judged": judge(evaluator, result.image, sides),
        "image": result.image,
    }


def evaluation_seconds(
    features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, repeats: int = 3
) -> float:
    """One evaluation at the output size (the objective, coarser levels included, and its
    backward) in ``cfg``'s precision: the median of ``repeats`` after one warm-up."""
    return evaluation_times(features, content, style, {"cfg": cfg}, repeats)["cfg"]


def evaluation_times(
    features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, configs: dict[str, StyleConfig], repeats: int = 3
) -> dict[str, float]:
    """:func:`evaluation_seconds` of each config, interleaved (one of each per round, the same
    machine state for all): medians of ``repeats`` after one warm-up each."""
    points = {}
    for name, cfg in configs.items():
        scaled, style_scaled = (
            resize(content, fit_size(*content.shape[-2:], cfg.size)),
            resize_max_side(style, cfg.size),
        )
        start, objective = scale_objective(scaled, features, cfg, [compute_style_targets(style_scaled, features, cfg)])
        points[name] = (start.clone().requires_grad_(True), objective)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats + 1):
        for name, (x, objective) in points.items():
            began = time.perf_counter()
            total, _ = objective(x)
            total.backward()
            x.grad = None
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            times[name].append(time.perf_counter() - began)
    return {name: round(statistics.median(t[1:]), 3) for name, t in times.items()}


def precision_table(r: dict[str, Any]) -> str:
    """bf16 against fp32: one evaluation's time, and the distances after the same schedule."""
    if len(r["precisions"]) != 2:
        return ""
    a, b = r["precisions"]
    small = str(min(r["sizes"]))
    lines = [
        f"| pair | size | evaluation s ({a} / {b}) | ratio | content ({a} / {b}) | style gain ({a} / {b}) | "
        f"at {small} px: content, style gain ({b} vs {a}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            x, y = runs[a], runs[b]
            jx, jy = x["judged"][size], y["judged"][size]
            sx, sy = x["judged"][small], y["judged"][small]
            lines.append(
                f"| {pair} | {size} | {x['evaluation_s']} / {y['evaluation_s']} | "
                f"{y['evaluation_s'] / x['evaluation_s']:.2f} | "
                f"{jx['content']} / {jy['content']} ({jy['content'] / jx['content'] - 1:+.1%}) | {jx['style_gain']} / "
                f"{jy['style_gain']} ({jy['style_gain'] / jx['style_gain'] - 1:+.1%}) | "
                f"{sy['content'] / sx['content'] - 1:+.1%}, {sy['style_gain'] / sx['style_gain'] - 1:+.1%} |"
            )
    return "\n".join(lines)


def _save(run: dict[str, Any], folder: Path | None, name: str) -> dict[str, Any]:
    """The run without its image, which goes to ``folder/name.png`` (for looking at)."""
    image = run.pop("image")
    if folder is not None:
        from nst_batch.tasks.pair.image_files import encode_image

        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(encode_image(image, "PNG"))
    return run


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    configure_backends(device)
    features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
    images = Path(args.images)
    results: dict[str, Any] = {
        "device": str(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "sizes": args.sizes,
        "coarse_size": args.coarse_size,
        "reference_iterations": args.reference_iterations,
        "precisions": args.precisions,
        "pairs": {},
    }
    from nst_batch.tasks.pair.image_files import load_image

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
            runs = {"baseline": replace(defaults, **BASELINE)} if args.baseline else {}
            # With --precisions, the defaults run once per precision instead of once in "auto".
            runs.update({p: replace(defaults, precision=p) for p in args.precisions} or {"defaults": defaults})
            if args.reference_iterations:
                runs["reference"] = replace(defaults, iterations=(args.reference_iterations,), early_stop_rtol=0.0)
            rows[str(size)] = {
                name: _save(
                    run_once(features, content, style, cfg, evaluator, args.sizes),
                    args.images_out,
                    f"{content_stem}__{style_stem}_{size}_{name}",
                )
                for name, cfg in runs.items()
            }
            for p in args.precisions:
                rows[str(size)][p]["evaluation_s"] = evaluation_seconds(features, content, style, runs[p])
            print(f"[quality] {pair} {size} px done", file=sys.stderr, flush=True)
        results["pairs"][pair] = rows
    return results


def table(r: dict[str, Any]) -> str:
    """One row per pair, size and run; the distances at the output size / downscaled to the smallest size."""
    small = min(r["sizes"])
    lines = [
        f"| pair | size | run | scales, px | iterations | s | content (own / at {small} px) | "
        f"style gain (own / at {small} px) | loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            for name, x in runs.items():
                own, at = x["judged"][size], x["judged"][str(small)]
                lines.append(
                    f"| {pair} | {size} | {name} | {x['sides']} | {x['iterations']} | {x['seconds']} | "
                    f"{own['content']} / {at['content']} | {own['style_gain']} / {at['style_gain']} | {x['loss']:.4g} |"
                )
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
                    lines.append(
                        f"| {pair} | {2 * size} px at {size} px vs {size} px: {key} | "
                        f"{at[key] / small[key] - 1:+.1%} | within 10 % |"
                    )
        for size, runs in sizes.items():
            if "reference" in runs and "defaults" in runs:
                d, ref = runs["defaults"], runs["reference"]
                lines.append(
                    f"| {pair} | {size} px loss vs reference ({sum(ref['iterations'])} its) | "
                    f"{d['loss'] / ref['loss'] - 1:+.2%} "
                    f"in {sum(d['iterations'])} iterations | within 2 % |"
                )
    return "\n".join(lines)


def versus_baseline(r: dict[str, Any]) -> str:
    """Today's defaults against the baseline's, run side by side: time and distances as ratios."""
    small = str(min(r["sizes"]))
    lines = [
        "| pair | size | iterations (baseline → defaults) | precision | wall time ratio | content ratio (own / at "
        f"{small} px) | style gain ratio (own / at {small} px) | fp32 loss ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            if "baseline" not in runs:
                continue
            b = runs["baseline"]
            for d in (run for name, run in runs.items() if name not in ("baseline", "reference")):
                ratio = {
                    k: (d["judged"][size][k] / b["judged"][size][k], d["judged"][small][k] / b["judged"][small][k])
                    for k in ("content", "style_gain")
                }
                lines.append(
                    f"| {pair} | {size} | {b['iterations']} → {d['iterations']} | {b['precision']} → "
                    f"{d['precision']} | "
                    f"{d['seconds'] / b['seconds']:.2f} | {ratio['content'][0]:.3f} / {ratio['content'][1]:.3f} | "
                    f"{ratio['style_gain'][0]:.3f} / {ratio['style_gain'][1]:.3f} | {d['loss'] / b['loss']:.3f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--images", default=str(DEFAULT_IMAGES), help="folder with content/ and style/ (default ../shared/images)"
    )
    p.add_argument("--sizes", type=int_list, default=[256, 512])
    p.add_argument("--coarse-size", type=int, default=StyleConfig().coarse_size, help="the defaults' first scale, px")
    p.add_argument(
        "--reference-iterations", type=int, default=2000, help="per scale, no early stop; 0 skips the reference"
    )
    p.add_argument(
        "--iterations",
        type=int_list,
        default=None,
        help="override the defaults' iterations per scale, N1,N2,... (for quick tries)",
    )
    p.add_argument("--images-out", type=Path, default=None, help="write every output here as PNG, to look at")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run main's defaults before the CPU speed issue (fp32, 500,150 iterations, loss plateau stop only) "
        "and print time and distance ratios",
    )
    p.add_argument(
        "--precisions",
        type=lambda t: [x for x in t.split(",") if x],
        default=[],
        help="also run the defaults in each of these precisions (fp32,bf16) and compare them: time per evaluation, "
        "distances",
    )
    p.add_argument(
        "--pairs", default=DEFAULT_PAIRS, help=f"content:style stems, comma-separated (default {DEFAULT_PAIRS})"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args)
    text = f"{table(results)}\n\n{targets(results)}"
    if args.baseline:
        text += f"\n\n{versus_baseline(results)}"
    if args.precisions:
        text += f"\n\n{precision_table(results)}"
    return report(text, results, args.json)


if __name__ == "__main__":
    sys.exit(main())
