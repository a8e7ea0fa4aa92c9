"""How the batch scales with the number of pairs: plan, validate, run, re-run, and a plan of
100,000 pairs, on tiny synthetic images (16 px, 1 iteration) so that orchestration is what is
measured. Each step is a fresh process, measured by wall time and the kernel's peak RSS.

    python -m benchmarks.scale [--pairs 10000] [--styles 10] [--workdir .bench/scale] [--json PATH]

Orchestration per produced pair is (the flow's wall time - the pairs' own wall times) / pairs:
what Prefect and our bookkeeping add on top of producing the images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import report
from benchmarks.processes import Measured, run_measured

TARGETS = {
    "plan_s": 5.0,
    "validate_s": 5.0,
    "run_peak_rss_mb": 1536,
    "orchestration_ms_per_pair": 10.0,
    "rerun_s": 60.0,
    "rerun_verify_s": 60.0,
    "plan_100k_peak_rss_mb": 1536,
}


def make_images(root: Path, contents: int, styles: int, side: int = 16) -> None:
    rng = np.random.default_rng(0)
    for folder, count in (("photos", contents), ("styles", styles)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / folder / f"{folder[0]}{i:05d}.png"
            if not path.exists():
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)


def write_manifest(root: Path, name: str, styles: int, output: str = "out") -> Path:
    style_lines = "\n".join(f"  s{i}: styles/s{i:05d}.png" for i in range(styles))
    text = (
        f"output: {output}\ndefaults: "
        f"{{size: 16, scales: [1.0], iterations: 1}}\nstyles:\n{style_lines}\ncontents: [photos/*.png]\n"
    )
    path = root / name
    path.write_text(text)
    return path


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def nst(*args: str) -> list[str]:
    return [sys.executable, "-m", "nst_batch.cli.main", *args]


def _plan_measured(what: str, manifest: Path, env: dict[str, str]) -> tuple[Measured, str, str]:
    """Planning ``manifest`` in a process of its own: (the measured run, its pairs, its seconds)."""
    code = f"""
        import time; t = time.perf_counter()
        from nst_batch.tasks.planning.plan import load_plan
        plan = load_plan({str(manifest)!r}); print(len(plan.pairs), time.perf_counter() - t)"""
    plan = _check(what, run_measured(python(code), env=env))
    planned, seconds = plan.stdout.split()
    return plan, planned, seconds


def _check(step: str, measured: Measured, ok: tuple[int, ...] = (0,)) -> Measured:
    if measured.returncode not in ok:
        raise SystemExit(f"{step} failed with exit {measured.returncode}:\n{measured.stderr[-3000:]}")
    return measured


def measure(pairs: int, styles: int, workdir: Path, planned_100k: bool = True) -> dict[str, Any]:
    contents = max(1, pairs // styles)
    make_images(workdir, contents, styles)
    manifest = write_manifest(workdir, "m.yaml", styles)
    shutil.rmtree(workdir / "out", ignore_errors=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    plan, planned, plan_s = _plan_measured("plan", manifest, env)
    validate = _check("validate", run_measured(nst("validate", str(manifest), "--json"), env=env))
    run = _check("run", run_measured(nst("run", str(manifest), "--summary-json", str(workdir / "s1.json")), env=env))
    summary = json.loads((workdir / "s1.json").read_text())
    rerun = _check(
        "re-run", run_measured(nst("run", str(manifest), "--summary-json", str(workdir / "s2.json")), env=env)
    )
    resummary = json.loads((workdir / "s2.json").read_text())
    verified = _check(
        "re-run --verify",
        run_measured(nst("run", str(manifest), "--verify", "--summary-json", str(workdir / "s3.json")), env=env),
    )
    produced = summary["counts"]["produced"]
    pair_seconds = sum(r.get("wall_time_s") or 0 for r in summary["pairs"])
    out: dict[str, Any] = {
        "pairs": int(planned),
        "plan_s": round(float(plan_s), 2),
        "plan_peak_rss_mb": round(plan.peak_rss_mb),
        "validate_s": round(validate.wall_s, 2),
        "validate_peak_rss_mb": round(validate.peak_rss_mb),
        "run_s": round(run.wall_s, 1),
        "run_flow_s": summary["wall_time_s"],
        "run_peak_rss_mb": round(run.peak_rss_mb),
        "produced": produced,
        "pairs_seconds": round(pair_seconds, 1),
        "orchestration_ms_per_pair": round(1000 * (summary["wall_time_s"] - pair_seconds) / max(1, produced), 2),
        "pairs_per_s": round(produced / max(1e-9, summary["wall_time_s"]), 1),
        "rerun_s": round(rerun.wall_s, 1),
        "rerun_flow_s": resummary["wall_time_s"],
        "rerun_skipped": resummary["counts"]["skipped"],
        "rerun_ms_per_skipped_pair": round(1000 * resummary["wall_time_s"] / max(1, resummary["counts"]["skipped"]), 2),
        "rerun_verify_s": round(verified.wall_s, 1),
        "rerun_verify_skipped": json.loads((workdir / "s3.json").read_text())["counts"]["skipped"],
    }
    if planned_100k:
        out.update(_plan_100k(workdir, env))
    return out


def _plan_100k(workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    root = workdir / "100k"
    make_images(root, 1000, 100)
    manifest = write_manifest(root, "m.yaml", 100)
    plan, planned, seconds = _plan_measured("plan 100k", manifest, env)
    return {
        "plan_100k_pairs": int(planned),
        "plan_100k_s": round(float(seconds), 1),
        "plan_100k_peak_rss_mb": round(plan.peak_rss_mb),
    }


def table(r: dict[str, Any]) -> str:
    def row(label: str, key: str, unit: str, target_key: str | None = None) -> str:
        target = TARGETS.get(target_key or key)
        verdict = "" if target is None else f"<= {target:g} ({'met' if r[key] <= target else 'missed'})"
        return f"| {label} | {r[key]} {unit} | {verdict} |"

    lines = [
        "| figure | measured | target |",
        "|---|---|---|",
        row(f"plan {r['pairs']} pairs (in-process)", "plan_s", "s"),
        row("nst validate (whole command: every input's header, the output root)", "validate_s", "s"),
        row(f"nst run, {r['produced']} produced: wall", "run_s", "s", "-"),
        row("nst run: peak RSS", "run_peak_rss_mb", "MB"),
        row("orchestration per produced pair (flow time - pairs' own time)", "orchestration_ms_per_pair", "ms"),
        row("re-run, every pair skipped: wall", "rerun_s", "s"),
        row("re-run: per skipped pair (flow time)", "rerun_ms_per_skipped_pair", "ms", "-"),
        row("re-run with --verify (every output hashed): wall", "rerun_verify_s", "s"),
    ]
    if "plan_100k_pairs" in r:
        lines.append(row(f"plan {r['plan_100k_pairs']} pairs: peak RSS", "plan_100k_peak_rss_mb", "MB"))
        lines.append(row(f"plan {r['plan_100k_pairs']} pairs: time", "plan_100k_s", "s", "-"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=10_000)
    p.add_argument("--styles", type=int, default=10)
    p.add_argument("--workdir", default=".bench/scale")
    p.add_argument("--no-100k", action="store_true", help="skip the 100,000-pair plan")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args.pairs, args.styles, Path(args.workdir).resolve(), not args.no_100k)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
