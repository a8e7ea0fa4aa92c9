"""How much work a picture takes: main's defaults of 2026-12-04 against today's, interleaved in one run.

    python -m benchmarks.work [--sizes 256,512] [--pairs tubingen:starry_night,...] [--reps 1]
                              [--sheet docs/work-contact-sheet.png] [--device auto] [--json PATH]

For each pair and size, the two settings run one after the other (before, now, before, now, ...)
in one process on the same images; per run it records the wall time of the stylization (style
targets included), the iterations and the 512-equivalent evaluations of each scale (an evaluation
costs about its pixels: one at 256 px is 1/4 of one at 512, and a finer scale's evaluation also
pays the passes at the coarser sizes that ``coarse_style_share`` adds), and the evaluator's content
distance and style gain at the output size and at 256 px (the size a gallery shows). It prints the
ratios (now / before) and writes a contact sheet, before | now for each pair at the largest size,
as a PNG.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
from benchmarks.evaluator import Evaluator
from benchmarks.quality import DEFAULT_PAIRS, _image, judge
from nst_batch.core import StyleConfig, configure_backends, for_device, resolve_device, stylize
from nst_batch.core.image_ops import fit_size, resize, resize_max_side
from nst_batch.core.vgg import VGGFeatures
from nst_batch.core.weights import load_caffe_weights

VIEW = 256
# main's defaults until 2026-12-05 (what the work issue measured): a 256-px scale of up to 500
# iterations, then 100 at the output size with half of each evaluation's loss taken at 256 px,
# plateau stop 0.25 % over 50 iterations, pixels optimised as they are, from the content.
BEFORE: dict[str, Any] = {
    "iterations": (500, 100),
    "early_stop_rtol": 2.5e-3,
    "early_stop_window": 50,
    "coarse_style_share": 0.5,
    "init": "content",
    "upsample": "image",
    "coarse_size": 256,
    "precondition": 0,
    "style_loss": "gram",
}


def evaluations_512(cfg: StyleConfig, height: int, width: int, iterations: list[int]) -> list[float]:
    """Each scale's evaluations in units of one evaluation of this photo at 512 px."""
    unit = float(fit_size(height, width, 512)[0] * fit_size(height, width, 512)[1])
    sides = cfg.sides()
    out = []
    for index, (side, its) in enumerate(zip(sides, iterations, strict=False)):
        h, w = fit_size(height, width, side)
        pixels = h * w
        if cfg.coarse_style_share > 0:
            pixels += sum(fit_size(height, width, s)[0] * fit_size(height, width, s)[1] for s in sides[:index])
        out.append(round(its * pixels / unit, 1))
    return out


def run_once(
    features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, evaluator: Evaluator
) -> dict[str, Any]:
    scaled, style_scaled = resize(content, fit_size(*content.shape[-2:], cfg.size)), resize_max_side(style, cfg.size)
    began = time.perf_counter()
    result = stylize(scaled, features, cfg, styles=[style_scaled])
    if scaled.device.type == "cuda":
        torch.cuda.synchronize(scaled.device)
    seconds = time.perf_counter() - began
    iterations = [s.iterations for s in result.scales]
    return {
        "seconds": round(seconds, 1),
        "sides": list(cfg.sides()),
        "iterations": iterations,
        "evaluations_512": evaluations_512(cfg, *content.shape[-2:], iterations),
        "precision": for_device(cfg, scaled.device).precision,
        "judged": judge(evaluator, result.image, [VIEW]),
        "image": result.image.cpu(),
    }


def contact_sheet(
    images: dict[str, dict[str, torch.Tensor]], path: Path, side: int = 384, names: tuple[str, ...] = ("before", "now")
) -> None:
    """One row per pair: ``names`` side by side (before | now), each at ``side`` px, labelled."""
    import io

    from PIL import Image, ImageDraw

    from nst_batch.tasks.pair.image_files import encode_image

    rows = []
    for pair, runs in images.items():
        tiles = [
            Image.open(io.BytesIO(encode_image(resize_max_side(runs[name], side), "PNG"))).convert("RGB")
            for name in names
        ]
        h = max(t.height for t in tiles) + 22
        row = Image.new("RGB", (sum(t.width for t in tiles) + 10, h), "white")
        x = 0
        for name, tile in zip(names, tiles, strict=True):
            row.paste(tile, (x, 22))
            ImageDraw.Draw(row).text((x + 4, 4), f"{pair}: {name}", fill="black")
            x += tile.width + 10
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def network(device_name: str) -> tuple[torch.device, VGGFeatures, dict[str, Any]]:
    """The device, VGG-19 on it, and what a result says of the machine."""
    device = resolve_device(device_name)
    configure_backends(device)
    features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
    return (
        device,
        features,
        {
            "device": str(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
        },
    )


def shared_pairs(
    images: str | Path, pairs: str, device: torch.device
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(``photo:painting``, the photo, the painting) on ``device`` for each of ``pairs`` (stems
    under ``images``/content and ``images``/style)."""
    from nst_batch.tasks.pair.image_files import load_image

    for pair in pairs.split(","):
        content_stem, style_stem = pair.split(":")
        yield (
            pair,
            load_image(_image(Path(images) / "content", content_stem)).rgb.to(device),
            load_image(_image(Path(images) / "style", style_stem)).rgb.to(device),
        )


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    device, features, machine = network(args.device)
    results: dict[str, Any] = {
        **machine,
        "before": {k: list(v) if isinstance(v, tuple) else v for k, v in BEFORE.items()},
        "now": StyleConfig().to_json(),
        "pairs": {},
    }
    sheet: dict[str, dict[str, torch.Tensor]] = {}
    for pair, content, style in shared_pairs(args.images, args.pairs, device):
        evaluator = Evaluator(features, content, style)
        results["pairs"][pair] = {}
        for size in args.sizes:
            configs = {"before": replace(StyleConfig(size=size), **BEFORE), "now": StyleConfig(size=size)}
            runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
            for _ in range(args.reps):
                for name, cfg in configs.items():  # interleaved
                    run = run_once(features, content, style, cfg, evaluator)
                    print(
                        f"[work] {pair} {size} px {name}: {run['seconds']} s, iterations {run['iterations']}, "
                        f"evaluations {run['evaluations_512']}, {run['judged']}",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs[name].append(run)
            if size == max(args.sizes):
                sheet[pair] = {name: runs[name][-1]["image"] for name in runs}
            for name in runs:
                for run in runs[name]:
                    run.pop("image")
            results["pairs"][pair][str(size)] = runs
    return results, sheet


def table(r: dict[str, Any]) -> str:
    lines = [
        "| pair | size | run | s | iterations per scale | 512-eq evaluations | content (own / at 256) | style gain "
        "(own / at 256) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = [
        "| pair | size | time now/before | evaluations now/before | content at 256 | style gain at 256 | content own "
        "| style gain own |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair, sizes in r["pairs"].items():
        for size, runs in sizes.items():
            med = {}
            for name, reps in runs.items():
                s = statistics.median(x["seconds"] for x in reps)
                last = reps[-1]
                own, at = last["judged"][size], last["judged"][str(VIEW)]
                med[name] = (s, sum(last["evaluations_512"]), own, at)
                lines.append(
                    f"| {pair} | {size} | {name} | {s} | {last['iterations']} | {last['evaluations_512']} = "
                    f"{sum(last['evaluations_512']):.0f} | {own['content']} / {at['content']} | {own['style_gain']} "
                    f"/ {at['style_gain']} |"
                )
            (tb, eb, ob, ab), (tn, en, on, an) = med["before"], med["now"]
            ratios.append(
                f"| {pair} | {size} | {tn / tb:.2f} | {en / eb:.2f} | {an['content'] / ab['content'] - 1:+.1%} | "
                f"{an['style_gain'] / ab['style_gain'] - 1:+.1%} | {on['content'] / ob['content'] - 1:+.1%} | "
                f"{on['style_gain'] / ob['style_gain'] - 1:+.1%} |"
            )
    return "\n".join(lines) + "\n\n" + "\n".join(ratios)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.work", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--sizes", type=int_list, default=[256, 512])
    p.add_argument("--pairs", default=DEFAULT_PAIRS)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--sheet", type=Path, default=Path("docs/work-contact-sheet.png"))
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results, sheet = measure(args)
    contact_sheet(sheet, args.sheet)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
