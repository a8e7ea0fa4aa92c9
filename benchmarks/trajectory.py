"""Where does a scale stop changing? The trajectories of one run without early stopping.

    python -m benchmarks.trajectory [--size 512] [--iterations 600,300] [--pairs tubingen:starry_night,...]
                                    [--every 10] [--precision fp32] [--device auto] [--json PATH]

Runs each pair with the plateau stop off and records, every ``--every`` iterations of every
scale: the loss, the best iterate's change per iteration as shown at the coarse size (the size a
gallery shows; mean absolute change of the 8-bit pixel values) and at the scale's own size, and
the evaluator's content distance and style gain at the scale's size. It prints, per scale, the
iteration at which each candidate stop rule would fire and what the run gave up there: the
loss's and the distances' gap to the end of the scale. This is how the default stop was chosen
(see docs/how-it-works.md, "Where a scale stops").
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
from benchmarks.quality import DEFAULT_PAIRS, _image
from nst_batch.core import StyleConfig, configure_backends, resolve_device, stylize
from nst_batch.core.config import StepInfo, WantsImages
from nst_batch.core.image_ops import fit_size, resize, resize_max_side
from nst_batch.core.vgg import VGGFeatures
from nst_batch.core.weights import load_caffe_weights

# Candidate rules, each a (name, fires(points, index) -> bool) over the recorded points of a scale.
RTOLS = (2.5e-3, 5e-3, 1e-2)  # the loss's relative improvement over the last 50 iterations
CHANGES = (0.05, 0.1, 0.2)  # 8-bit levels per iteration, at the coarse size, over the last 20


class Recorder(WantsImages):
    """An ``on_step`` callback that keeps one point every ``every`` iterations."""

    def __init__(self, evaluator: Evaluator, content: torch.Tensor, view_side: int) -> None:
        self.evaluator, self.content, self.view_side = evaluator, content, view_side
        self.points: list[dict[str, Any]] = []
        self._last: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}  # scale -> (iteration, own, view)
        self.began = time.perf_counter()
        self.paused = 0.0  # seconds spent here, not in the run
        self._photo: dict[tuple[int, ...], Any] = {}

    def __call__(self, info: StepInfo) -> None:
        if info.losses is None or info.image is None:
            return
        entered = time.perf_counter()
        own = (info.image * 255).round()
        view = (resize_max_side(info.image, self.view_side) * 255).round()
        point: dict[str, Any] = {
            "scale": info.scale_index,
            "side": max(info.height, info.width),
            "iteration": info.iteration,
            "loss": info.losses["total"],
            "seconds": round(entered - self.began - self.paused, 2),
        }
        last = self._last.get(info.scale_index)
        if last is not None and info.iteration > last[0]:
            steps = info.iteration - last[0]
            point["change_own"] = round(float((own - last[1]).abs().mean()) / steps, 4)
            point["change_view"] = round(float((view - last[2]).abs().mean()) / steps, 4)
        self._last[info.scale_index] = (info.iteration, own, view)
        shown = info.image
        size = tuple(shown.shape[-2:])
        if size not in self._photo:  # the photo's own distances, once per scale
            self._photo[size] = self.evaluator(resize(self.content, size))
        d, base = self.evaluator(shown), self._photo[size]
        point["content"], point["style_gain"] = round(d.content, 4), round(d.style / base.style, 4)
        self.points.append(point)
        self.paused += time.perf_counter() - entered


def first(points: list[dict[str, Any]], fires: Any) -> dict[str, Any] | None:
    return next((p for i, p in enumerate(points) if fires(points, i)), None)


def rtol_rule(rtol: float, window: int = 50) -> Any:
    def fires(points: list[dict[str, Any]], i: int) -> bool:
        now = points[i]
        before = [p for p in points[: i + 1] if now["iteration"] - p["iteration"] >= window]
        return bool(before) and before[-1]["loss"] - now["loss"] <= rtol * abs(now["loss"])

    return fires


def change_rule(level: float, window: int = 20) -> Any:
    def fires(points: list[dict[str, Any]], i: int) -> bool:
        now = points[i]
        recent = [p for p in points[: i + 1] if now["iteration"] - p["iteration"] < window and "change_view" in p]
        return now["iteration"] >= window and bool(recent) and max(p["change_view"] for p in recent) <= level

    return fires


def rules() -> dict[str, Any]:
    out = {f"loss {r:g}/50": rtol_rule(r) for r in RTOLS}
    out.update({f"change {c:g}/it": change_rule(c) for c in CHANGES})
    return out


def summary(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scale and rule: where it fires and the gap to the scale's last point."""
    rows = []
    for scale in sorted({p["scale"] for p in points}):
        mine = [p for p in points if p["scale"] == scale]
        end = mine[-1]
        for name, fires in rules().items():
            hit = first(mine, fires)
            row = {"scale": scale, "side": end["side"], "rule": name, "end": end["iteration"]}
            if hit is not None:
                row.update(
                    {
                        "fires_at": hit["iteration"],
                        "loss_gap": hit["loss"] / end["loss"] - 1,
                        "content_gap": hit["content"] / end["content"] - 1,
                        "style_gap": hit["style_gain"] / end["style_gain"] - 1,
                    }
                )
            rows.append(row)
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    configure_backends(device)
    features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
    cfg = StyleConfig(size=args.size, iterations=tuple(args.iterations), early_stop_rtol=0.0, precision=args.precision)
    images = Path(args.images)
    from nst_batch.tasks.pair.image_files import load_image

    out: dict[str, Any] = {
        "device": str(device),
        "size": args.size,
        "iterations": args.iterations,
        "precision": args.precision,
        "pairs": {},
    }
    for pair in args.pairs.split(","):
        content_stem, style_stem = pair.split(":")
        content = load_image(_image(images / "content", content_stem)).rgb.to(device)
        style = load_image(_image(images / "style", style_stem)).rgb.to(device)
        recorder = Recorder(Evaluator(features, content, style), content, cfg.coarse_size)
        scaled = resize(content, fit_size(*content.shape[-2:], cfg.size))
        stylize(
            scaled,
            features,
            replace(cfg),
            styles=[resize_max_side(style, cfg.size)],
            on_step=recorder,
            report_every=args.every,
        )
        out["pairs"][pair] = {"points": recorder.points, "summary": summary(recorder.points)}
        print(f"[trajectory] {pair} done", file=sys.stderr, flush=True)
    return out


def table(r: dict[str, Any]) -> str:
    lines = [
        "| pair | scale px | rule | fires at / of | loss gap | content gap | style gain gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for pair, data in r["pairs"].items():
        for row in data["summary"]:
            if "fires_at" in row:
                lines.append(
                    f"| {pair} | {row['side']} | {row['rule']} | {row['fires_at']} / {row['end']} | "
                    f"{row['loss_gap']:+.2%} | "
                    f"{row['content_gap']:+.2%} | {row['style_gap']:+.2%} |"
                )
            else:
                lines.append(f"| {pair} | {row['side']} | {row['rule']} | never / {row['end']} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trajectory", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--images", default=str(DEFAULT_IMAGES), help="folder with content/ and style/ (default ../shared/images)"
    )
    p.add_argument("--size", type=int, default=512)
    p.add_argument(
        "--iterations", type=int_list, default=[600, 300], help="per scale, from the coarsest; no early stop"
    )
    p.add_argument("--every", type=int, default=10, help="record a point every N iterations")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--pairs", default=",".join(DEFAULT_PAIRS.split(",")[:2]))
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    return report(table(results := measure(args)), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
