"""Running pastiche (the reference tool) as its own command, and reading its timings.

pastiche is run through its command line in a child process, exactly as a user would run it,
so its figures include nothing of ours. Its verbose output prints the seconds elapsed since its
start at every ``--info-step`` steps; step 0 is printed once the network and targets are ready,
so ``elapsed(last) - elapsed(0)`` is its optimisation time alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from benchmarks.processes import run_measured

_STEP_LINE = re.compile(r"^(\d+)\s+([0-9.]+)\s+([0-9.eE+-]+|nan|inf)\s*$")


@dataclass(frozen=True)
class PasticheRun:
    output: str  # the PNG it wrote
    size: int
    steps: int
    setup_s: float  # from its start until step 0 (weights, images, targets)
    optimise_s: float  # step 0 to the last step
    wall_s: float  # the whole child process, interpreter start included
    peak_rss_mb: float
    version: str


def pastiche_command(
    content: Path, style: Path, output: Path, size: int, steps: int, info_step: int, device: str = "cpu"
) -> list[str]:
    # Its defaults otherwise: L-BFGS (max_iter 1, history 100), content block4_relu2, style
    # block1..5_relu1, content init, no TV. --seed makes the run repeatable.
    return [
        sys.executable,
        "-m",
        "pastiche",
        "--content",
        str(content),
        "--styles",
        str(style),
        "--output",
        str(output),
        "--size",
        str(size),
        "--num-steps",
        str(steps),
        "--seed",
        "0",
        "--device",
        device,
        "--info-step",
        str(info_step),
    ]


def run_pastiche(content: Path, style: Path, workdir: Path, size: int, steps: int, device: str = "cpu") -> PasticheRun:
    suffix = "" if device == "cpu" else "_" + device.replace(":", "")
    output = workdir / f"pastiche_{size}px_{steps}steps{suffix}.png"
    measured = run_measured(
        pastiche_command(content, style, output, size, steps, info_step=max(1, steps), device=device)
    )
    if measured.returncode != 0:
        raise RuntimeError(f"pastiche failed (exit {measured.returncode}): {measured.stderr.strip()[-500:]}")
    elapsed = {int(m.group(1)): float(m.group(2)) for m in map(_STEP_LINE.match, measured.stdout.splitlines()) if m}
    if 0 not in elapsed or steps not in elapsed:
        raise RuntimeError(f"could not read pastiche's step timings from its output: {measured.stdout[-500:]}")
    return PasticheRun(
        str(output),
        size,
        steps,
        elapsed[0],
        elapsed[steps] - elapsed[0],
        measured.wall_s,
        measured.peak_rss_mb,
        version("pastiche"),
    )


def cached_pastiche_run(
    content: Path, style: Path, workdir: Path, size: int, steps: int, *, reuse: bool
) -> tuple[PasticheRun, bool]:
    """The reference run, reused from ``workdir`` when asked and made with the same inputs and version.

    Returns the run and whether it was reused (the table says so).
    """
    key = hashlib.sha256(
        b"".join([content.read_bytes(), style.read_bytes(), f"{size}/{steps}/{version('pastiche')}".encode()])
    ).hexdigest()[:16]
    record = workdir / f"pastiche_{size}px_{steps}steps.json"
    if reuse and record.exists():
        saved = json.loads(record.read_text())
        if saved.get("key") == key and Path(saved["run"]["output"]).exists():
            return PasticheRun(**saved["run"]), True
    run = run_pastiche(content, style, workdir, size, steps)
    record.write_text(json.dumps({"key": key, "run": asdict(run)}, indent=2))
    return run, False
