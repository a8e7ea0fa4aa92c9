"""Content against style, ours and pastiche's: each tool's default and its style weight at 1/3x and
3x, on two shared pairs at 256 px, judged by one evaluator, with each point's wall time.

    python -m benchmarks.pareto [--pairs tubingen:starry_night,golden_gate:the_scream] [--size 256]
                                [--factors 0.333,1,3] [--plot docs/pareto.png] [--json PATH]

Ours runs in this process with today's defaults (``style_weight`` 100 times each factor); pastiche
1.6.0 runs as its own command with its defaults (1000 L-BFGS steps, its --size, content weight 1)
and ``--style-weights`` 1 times each factor. Points are the evaluator's content distance and style
gain (lower is better on both), at the output's size; a tool's front is the curve its three
points draw. Times are optimisation time: ours from the loaded images to the output (style targets
included), pastiche's from its step 0 to its last step (its set-up, targets included, excluded).
The plot is drawn with Pillow: one panel per pair.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, report
from benchmarks.evaluator import Evaluator
from benchmarks.pastiche_runs import run_pastiche
from benchmarks.quality import _image
from nst_batch.core import StyleConfig, configure_backends, resolve_device, stylize
from nst_batch.core.image_ops import fit_size, resize, resize_max_side
from nst_batch.core.vgg import VGGFeatures
from nst_batch.core.weights import load_caffe_weights

PAIRS = "tubingen:starry_night,golden_gate:the_scream"


def judged(evaluator: Evaluator, image: torch.Tensor, content: torch.Tensor) -> tuple[float, float]:
    photo = resize(content, tuple(image.shape[-2:]))
    d, base = evaluator(image), evaluator(photo)
    return round(d.content, 4), round(d.style / base.style, 4)


def ours(
    features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, size: int, factor: float
) -> tuple[torch.Tensor, float]:
    cfg = StyleConfig(size=size)
    cfg = replace(cfg, style_weight=cfg.style_weight * factor)
    scaled = resize(content, fit_size(*content.shape[-2:], size))
    began = time.perf_counter()
    image = stylize(scaled, features, cfg, styles=[resize_max_side(style, size)]).image
    return image, time.perf_counter() - began


def theirs(content_path: Path, style_path: Path, size: int, factor: float, workdir: Path) -> tuple[torch.Tensor, float]:
    from benchmarks import pastiche_runs
    from nst_batch.tasks.pair.image_files import load_image

    original = pastiche_runs.pastiche_command

    def with_weight(*args: Any, **kwargs: Any) -> list[str]:
        return [*original(*args, **kwargs), "--style-weights", f"{factor:g}"]

    pastiche_runs.pastiche_command = with_weight  # its defaults otherwise
    folder = workdir / f"w{factor:g}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        run = run_pastiche(content_path, style_path, folder, size, 1000)
    finally:
        pastiche_runs.pastiche_command = original
    return load_image(run.output).rgb, run.optimise_s


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device("cpu")
    configure_backends(device)
    features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").eval()
    from nst_batch.tasks.pair.image_files import load_image

    images = Path(args.images)
    results: dict[str, Any] = {
        "size": args.size,
        "factors": args.factors,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "pairs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs.split(","):
            content_stem, style_stem = pair.split(":")
            content_path, style_path = _image(images / "content", content_stem), _image(images / "style", style_stem)
            content, style = load_image(content_path).rgb, load_image(style_path).rgb
            evaluator = Evaluator(features, content, style)
            points: dict[str, list[dict[str, Any]]] = {"ours": [], "pastiche": []}
            for factor in args.factors:  # interleaved: ours, pastiche, ours, ...
                for tool in ("ours", "pastiche"):
                    workdir = Path(tmp) / pair.replace(":", "_")
                    workdir.mkdir(exist_ok=True)
                    image, seconds = (
                        ours(features, content, style, args.size, factor)
                        if tool == "ours"
                        else theirs(content_path, style_path, args.size, factor, workdir)
                    )
                    c, s = judged(evaluator, image, content)
                    points[tool].append({"factor": factor, "content": c, "style_gain": s, "seconds": round(seconds, 1)})
                    print(
                        f"[pareto] {pair} {tool} x{factor:g}: content {c}, style gain {s}, {seconds:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            results["pairs"][pair] = points
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    from PIL import Image, ImageDraw

    panel_w, panel_h, margin = 520, 420, 60
    colours = {"ours": (31, 119, 180), "pastiche": (214, 39, 40)}
    pairs = results["pairs"]
    sheet = Image.new("RGB", (panel_w * len(pairs), panel_h + 40), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (pair, points) in enumerate(pairs.items()):
        left = index * panel_w
        every = [p for tool in points.values() for p in tool]
        xs, ys = [p["content"] for p in every], [p["style_gain"] for p in every]
        x0, x1 = min(xs) * 0.95, max(xs) * 1.05
        y0, y1 = min(ys) * 0.95, max(ys) * 1.05

        def at(
            p: dict[str, Any], left: int = left, x0: float = x0, x1: float = x1, y0: float = y0, y1: float = y1
        ) -> tuple[float, float]:
            return (
                left + margin + (p["content"] - x0) / (x1 - x0) * (panel_w - 2 * margin),
                panel_h - margin + 20 - (p["style_gain"] - y0) / (y1 - y0) * (panel_h - 2 * margin),
            )

        draw.rectangle(
            [left + margin, 20 + margin - 20, left + panel_w - margin, panel_h - margin + 20], outline=(160, 160, 160)
        )
        draw.text((left + margin, 8), f"{pair}, {results['size']} px (lower left is better)", fill="black")
        draw.text(
            (left + panel_w // 2 - 60, panel_h - margin + 26), f"content distance {x0:.3f} .. {x1:.3f}", fill="black"
        )
        draw.text((left + 4, 30), f"style gain\n{y1:.3f}\n..\n{y0:.3f}", fill="black")
        for tool, tool_points in points.items():
            line = [at(p) for p in sorted(tool_points, key=lambda p: p["content"])]
            draw.line(line, fill=colours[tool], width=2)
            for p in tool_points:
                x, y = at(p)
                draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colours[tool])
                draw.text((x + 7, y - 6), f"x{p['factor']:g}, {p['seconds']:.0f} s", fill=colours[tool])
        draw.text(
            (left + margin, panel_h + 18),
            "blue: ours (style_weight 100 x factor)   red: pastiche 1.6.0 (--style-weights factor)",
            fill="black",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def table(results: dict[str, Any]) -> str:
    lines = ["| pair | tool | style weight | content | style gain | s |", "|---|---|---|---|---|---|"]
    for pair, points in results["pairs"].items():
        for tool, tool_points in points.items():
            for p in tool_points:
                lines.append(
                    f"| {pair} | {tool} | x{p['factor']:g} | {p['content']} | {p['style_gain']} | {p['seconds']} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pareto", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--pairs", default=PAIRS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--factors", type=lambda t: [float(x) for x in t.split(",")], default=[1 / 3, 1.0, 3.0])
    p.add_argument("--plot", type=Path, default=Path("docs/pareto.png"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args)
    plot(results, args.plot)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
