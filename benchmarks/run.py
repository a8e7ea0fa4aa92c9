"""``nst bench``: run the sections, print the table, write the JSON.

nst bench [--quick] [--json PATH] [--images DIR] [--workdir DIR] [--only SECTION ...] [--reuse-reference]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, write_json
from benchmarks.sections import SECTIONS, Settings

# The targets: ratios, ours / the other; lower is better.
TARGETS = {"per_eval_ratio": 0.9, "time_to_quality_ratio": 0.5, "bf16_time_ratio": 0.6, "overhead_ratio": 1.10}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nst bench", description="Speed, quality and memory of this tool side by side with pastiche."
    )
    p.add_argument("--quick", action="store_true", help="the same figures on smaller sizes, in under 5 minutes")
    p.add_argument(
        "--profile", choices=("full", "quick", "tiny"), default=None, help=argparse.SUPPRESS
    )  # tiny: the tests'
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.add_argument(
        "--images",
        default=os.environ.get("NST_BENCH_IMAGES", str(DEFAULT_IMAGES)),
        help="folder with content/ and style/ image folders (default $NST_BENCH_IMAGES or ../shared/images)",
    )
    p.add_argument(
        "--workdir", default=".bench", help="where outputs and the pastiche reference run are kept (default .bench)"
    )
    p.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=None, help="run these sections only")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default: the sections below, side by side with pastiche), or cuda / cuda:N: the GPU figures of "
        "benchmarks/gpu.py (what scripts/gpu-check.sh prints)",
    )
    p.add_argument(
        "--reuse-reference",
        action="store_true",
        help="reuse pastiche's time-to-quality run from an earlier benchmark in --workdir (same images, size, steps "
        "and version); it takes ~40 min at 512 px",
    )
    return p


def machine() -> dict[str, Any]:
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ram_gib": round(mem, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
    }


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue names, pulled out of the sections."""

    def get(section: str, key: str) -> Any:
        return results.get(section, {}).get(key)

    memory = results.get("memory", {})
    return {
        "per_eval_ratio": get("per_eval", "ratio"),
        "time_to_quality_ratio": get("time_to_quality", "ratio"),
        "bf16_time_ratio": get("precision", "ratio"),
        "overhead_ratio": get("batch", "overhead_ratio_cold"),
        "overhead_ratio_warm": get("batch", "overhead_ratio_warm"),
        "peak_rss_mb": {
            size: {"ours": v.get("ours_mb"), "pastiche": v.get("pastiche_mb")} for size, v in _by_size(memory)
        },
    }


def _f(value: Any, fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def table(results: dict[str, Any]) -> str:
    """A Markdown table: docs/performance.md carries it as printed."""
    rows = ["| figure | ours | pastiche | ratio | target |", "|---|---|---|---|---|"]
    pe = results.get("per_eval")
    if pe:
        h, w = pe["size"]
        rows.append(
            f"| one evaluation, {w}x{h} px, fp32, interleaved reps (s, median) | {_f(pe['ours_s'])} | "
            f"{_f(pe['pastiche_s'])} | "
            f"{_f(pe['ratio'])} | {_target(pe['ratio'], 'per_eval_ratio')} |"
        )
        if "ours_min_s" in pe:
            rows.append(
                f"| the same, min of the reps (s) | {_f(pe['ours_min_s'])} | {_f(pe['pastiche_min_s'])} | "
                f"{_f(pe['ratio_of_mins'])} | |"
            )
        rows.append(
            f"| GFLOP/s in an evaluation (conv forward alone: {_f(pe['forward_conv_gflops_measured'], '{:.0f}')}) | "
            f"{_f(pe['ours_gflops'], '{:.0f}')} ({_f(100 * pe['ours_fraction_of_conv_throughput'], '{:.0f}')} %) | "
            f"{_f(pe['pastiche_gflops'], '{:.0f}')} "
            f"({_f(100 * pe['pastiche_fraction_of_conv_throughput'], '{:.0f}')} %) | | |"
        )
    tq = results.get("time_to_quality")
    if tq:
        ref = tq["pastiche"]
        reached = tq["reached"]
        ours = (
            f"{_f(tq['ours_s'], '{:.0f}')} (c {reached['content']:.3f}, s {reached['style']:.3f})"
            if reached
            else "not reached"
        )
        rows.append(
            f"| time to pastiche's quality after {tq['pastiche_steps']} steps, {tq['size']} px (s; content, style "
            f"distance) | "
            f"{ours} | {ref['optimise_s']:.0f} (c {ref['content']:.3f}, s {ref['style']:.3f}) | {_f(tq['ratio'])} | "
            f"{_target(tq['ratio'], 'time_to_quality_ratio')} |"
        )
    mem = results.get("memory")
    if mem:
        for _, m in _by_size(mem):
            h, w = m["pixels"]
            rows.append(
                f"| peak RSS, {w}x{h} px, 2 steps / with full L-BFGS history (MB) | {_f(m['ours_mb'], '{:.0f}')} / "
                f"{_f(m['ours_with_full_history_mb'], '{:.0f}')} (estimate {m['ours_estimate_mb']:.0f}) | "
                f"{_f(m['pastiche_mb'], '{:.0f}')} / {_f(m['pastiche_with_full_history_mb'], '{:.0f}')} | | |"
            )
        tiled = mem.get("tiled")
        if tiled:
            rows.append(
                f"| peak RSS, {tiled['size']} px in tiles of {tiled['tile_size']} px, 2 steps per tile (MB) | "
                f"{_f(tiled['ours_mb'], '{:.0f}')} (estimate {tiled['ours_estimate_mb']:.0f}; "
                f"largest in 8 GiB: {tiled['largest_size_8GiB_cpu']} px) | | | |"
            )
        rows.append(
            f"| largest output (4:3) in 8 GiB RAM / 24 GiB GPU (px, estimate) | {mem['largest_size_8GiB_cpu']} / "
            f"{mem['largest_size_24GiB_cuda']} | | | |"
        )
    pr = results.get("precision")
    if pr:
        h, w = pr["time_size"]
        native = "native" if pr["bf16_native"] else f"emulated: {pr['cpu_capability']} has no bf16"
        rows.append(
            f"| bf16 / fp32 evaluation, {w}x{h} px ({native}) (s) | {_f(pr['bf16_s'])} / {_f(pr['fp32_s'])} | | "
            f"{_f(pr['ratio'])} | {_target(pr['ratio'], 'bf16_time_ratio')} |"
        )
        d = pr["distances"]
        rows.append(
            f"| bf16 vs fp32 distances, {pr['run_size']} px, {pr['run_iterations']} iterations (content; style) | "
            f"{d['bf16']['content']:.3f} vs {d['fp32']['content']:.3f}; {d['bf16']['style']:.3f} vs "
            f"{d['fp32']['style']:.3f} "
            f"({100 * pr['content_change']:+.1f} %; {100 * pr['style_change']:+.1f} %) | | | within 5 % |"
        )
    ba = results.get("batch")
    if ba:
        pph = ba["pairs_per_hour"]
        rows.append(
            f"| batch {ba['pairs']} pairs, {ba['size']} px, iterations {ba['iterations']}: pairs/hour, nst run cold "
            f"/ warm vs plain loop | "
            f"{pph['nst_run_cold']:.0f} / {pph['nst_run_warm']:.0f} | {pph['plain_loop']:.0f} (plain loop) | "
            f"{_f(ba['overhead_ratio_cold'])} / {_f(ba['overhead_ratio_warm'])} | "
            f"{_target(ba['overhead_ratio_cold'], 'overhead_ratio')} |"
        )
    return "\n".join(rows)


def _by_size(memory: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The memory section's per-size entries (its other keys are the tiled run and the largest sizes)."""
    return [(size, m) for size, m in memory.items() if size.isdigit()]


def _target(value: float | None, key: str) -> str:
    verdict = "(not measured)" if value is None else "(met)" if value <= TARGETS[key] else "(missed)"
    return f"<= {TARGETS[key]} {verdict}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device != "cpu":
        from benchmarks.gpu import main as gpu_main

        extra = ["--json", args.json] if args.json else []
        return gpu_main(
            ["--device", args.device, "--images", args.images, "--workdir", str(Path(args.workdir) / "gpu"), *extra]
        )
    images = Path(args.images)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        profile = args.profile or ("quick" if args.quick else "full")
        settings = Settings.make(profile, images, workdir, args.reuse_reference)
    except FileNotFoundError as exc:
        print(f"nst bench: error: {exc}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "machine": machine(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "images": {"content": str(settings.content), "style": str(settings.style)},
    }
    failed = []
    for name in args.only or SECTIONS:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            results[name] = SECTIONS[name](settings)
        except Exception as exc:  # a section that breaks must not lose the others' figures
            failed.append(name)
            results[name + "_error"] = "".join(traceback.format_exception_only(exc)).strip()
            print(f"[bench] {name} failed: {results[name + '_error']}", file=sys.stderr)
        print(f"[bench] {name} took {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        if args.json:  # written after every section, so a long run interrupted keeps what it measured
            write_json(args.json, results)
    results.update(headline(results))
    results["targets"] = TARGETS
    m = results["machine"]
    print(
        f"\nMachine: {m['cpu']}, {m['cores']} cores ({m['cpu_capability']}), {m['ram_gib']} GiB RAM, torch "
        f"{m['torch']}; "
        f"{profile} run of {results['started']}\n"
    )
    print(table(results))
    if args.json:
        write_json(args.json, results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
