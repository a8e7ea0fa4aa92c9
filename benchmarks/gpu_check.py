"""The first GPU run's figures, cheapest and most decisive first, each printed and appended to a
JSON file the moment it is measured (a timeout loses only what was not yet measured):

1. ``graph``: did the iteration replay from a CUDA graph (and the capture's error if not);
2. ``replay``: ms per iteration replaying the graph, at 512 px with the default objective (the
   last scale of the default schedule: two VGG passes, the image and its coarse-scale copy),
   against the same iteration run eagerly;
3. ``direction``: ms of the L-BFGS direction (history 50) inside a graph and eagerly;
4. ``setup``: seconds from a new photo shape to its first captured iteration, cuDNN autotuning on
   and off (each shape is new to the process);
5. ``pair``: seconds per 512-px pair with the defaults, fp32 and bf16, with the evaluator's
   content and style distances;
6. ``pairs_per_hour``: through the real pair pipeline (nst_batch.tasks.pair.produce.run_pair, the device pool, the
   style cache) on 6 generated photos of mixed shapes, with k = 1, 2, 3 pairs per GPU;
7. ``memory``: peak reserved memory at 2048 px against the memory guard's estimate.

Each section has its own time budget (reps stop when it is spent); the whole fits in 7 minutes
on an H200. Images are generated (tests/synthetic.py), so nothing outside the tree is needed but
the wheels scripts/gpu-check.sh carries. ``--cpu`` runs every section at tiny sizes on the CPU
(what the test suite does): figures a CPU cannot give (a graph's replay) are written as null.

    python -m benchmarks.gpu_check [--cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

# Section name -> its budget in seconds on an H200 (the sum leaves room in the 7 minutes).
BUDGETS = {"graph": 30, "replay": 30, "direction": 20, "setup": 60, "pair": 80, "pairs_per_hour": 130, "memory": 40}
KEYS = ["device", "torch", "graphed", "capture_error", "replay_ms_512", "eager_iteration_ms_512", "direction_ms_in_graph",
        "direction_ms_eager", "setup_s_autotune_on", "setup_s_autotune_off", "pair_s_fp32", "pair_s_bf16", "pair_distances_fp32",
        "pair_distances_bf16", "pairs_per_hour_k1", "pairs_per_hour_k2", "pairs_per_hour_k3", "memory_2048"]


@dataclass(frozen=True)
class Sizes:
    replay: int
    pair: int
    memory: int
    shapes: tuple[tuple[int, int], ...]  # new photo shapes for the set-up figure, 3 per setting
    photos: tuple[tuple[int, int], ...]  # the mixed shapes of the pairs-per-hour batch
    pair_iterations: tuple[int, ...] | None  # None: the defaults' schedule
    reps: int


GPU = Sizes(512, 512, 2048, ((512, 384), (384, 512), (512, 341), (341, 512), (512, 288), (288, 512)),
            ((512, 384), (384, 512), (512, 512), (512, 341), (341, 512), (512, 288)), None, 30)
CPU = Sizes(32, 32, 48, ((32, 24), (24, 32), (32, 21), (21, 32), (32, 18), (18, 32)),
            ((32, 24), (24, 32), (32, 32), (32, 21), (21, 32), (32, 18)), (2, 2), 3)


class Results:
    """The figures so far, in a JSON file rewritten whole after each one (atomically)."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}
        path.parent.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        print(f"{key}: {json.dumps(value)}", flush=True)
        tmp = self.path.with_suffix(".json.part")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_ms(fn: Callable[[], object], device: torch.device, reps: int, deadline: float) -> float:
    """Median ms of ``fn`` over up to ``reps`` runs, fewer when the section's time runs out."""
    times: list[float] = []
    while len(times) < reps and (not times or time.monotonic() < deadline):
        _sync(device)
        began = time.perf_counter()
        fn()
        _sync(device)
        times.append(1000 * (time.perf_counter() - began))
    return round(statistics.median(times), 3)


class Check:
    def __init__(self, device: torch.device, sizes: Sizes, results: Results) -> None:
        from nst_batch.core import VGGFeatures, configure_backends
        from nst_batch.core.weights import load_caffe_weights
        from tests.synthetic import painting_like, photo_like

        self.device, self.sizes, self.results = device, sizes, results
        configure_backends(device)
        self.features = VGGFeatures(load_caffe_weights(), "relu5_1", "max").to(device).eval()
        if device.type == "cuda":
            self.features.use_channels_last(True)
        self.photo = lambda h, w, seed=0: photo_like(h, w, seed=seed).to(device)
        self.painting = painting_like(256, 256).to(device)

    # --- the default objective at one size -------------------------------------------------

    def objective(self, height: int, width: int, precision: str = "fp32") -> tuple[Any, torch.Tensor, Any]:
        """The objective of the default schedule's last scale at (height, width): the image and
        its coarse-scale copy (two VGG passes), against a generated painting's targets."""
        from nst_batch.core import StyleConfig, compute_style_targets
        from nst_batch.core.stylizer import scale_objective

        cfg = replace(StyleConfig(size=max(height, width), precision=precision), early_stop_rtol=0.0)
        content = self.photo(height, width)
        targets = compute_style_targets(self.painting, self.features, cfg)
        start, objective = scale_objective(content, self.features, cfg, [targets])
        return objective, start, cfg

    # --- sections --------------------------------------------------------------------------

    def graph(self, deadline: float) -> None:
        from nst_batch.core.optimize import optimize_scale

        objective, start, cfg = self.objective(*self._shape(self.sizes.replay))
        cuda = self.device.type == "cuda"
        outcome = optimize_scale(start, objective, cfg, 8, graphs=cuda, device_resident=True)
        self.results.put("graphed", outcome.graphed if cuda else None)
        self.results.put("capture_error", outcome.capture_error)

    def replay(self, deadline: float) -> None:
        from nst_batch.core import optimize as opt

        objective, start, cfg = self.objective(*self._shape(self.sizes.replay))
        evaluated = start.clone()
        eager = opt._DeviceStepper(start, objective, cfg)
        for _ in range(3):
            eager.step(evaluated)
        self.results.put("eager_iteration_ms_512", _timed_ms(lambda: eager.step(evaluated), self.device, self.sizes.reps, deadline))
        if self.device.type != "cuda":
            self.results.put("replay_ms_512", None)
            return
        graphed = opt._GraphedStepper(start, objective, cfg)
        for _ in range(graphed.WARMUP + 1):  # the warm-up and the capture, not timed
            graphed.step(evaluated)
        ms = _timed_ms(lambda: graphed.step(evaluated), self.device, self.sizes.reps, deadline) if graphed.graph is not None else None
        self.results.put("replay_ms_512", ms)

    def direction(self, deadline: float) -> None:
        from nst_batch.core import optimize as opt

        h, w = self._shape(self.sizes.replay)
        lbfgs, grads = full_history_lbfgs(3 * h * w, self.device)
        self.results.put("direction_ms_eager", _timed_ms(lambda: lbfgs.direction(grads[0]), self.device, self.sizes.reps, deadline))
        if self.device.type != "cuda":
            self.results.put("direction_ms_in_graph", None)
            return
        graph, _ = opt.CUDA.capture(lambda: lbfgs.direction(grads[0]), self.device)
        self.results.put("direction_ms_in_graph", _timed_ms(lambda: graph.replay(), self.device, self.sizes.reps, deadline))

    def setup(self, deadline: float) -> None:
        """A new shape's first iterations: the warm-up (cuDNN's tuning falls here) and the capture."""
        from nst_batch.core import configure_backends
        from nst_batch.core.optimize import optimize_scale

        shapes = list(self.sizes.shapes)
        for setting in (True, False):
            configure_backends(self.device, autotune=setting)
            seconds = []
            for _ in range(3):
                if not shapes or (seconds and time.monotonic() > deadline):
                    break
                objective, start, cfg = self.objective(*shapes.pop(0))
                _sync(self.device)
                began = time.perf_counter()
                optimize_scale(start, objective, cfg, 5, graphs=self.device.type == "cuda", device_resident=True)
                _sync(self.device)
                seconds.append(time.perf_counter() - began)
            self.results.put(f"setup_s_autotune_{'on' if setting else 'off'}", round(statistics.median(seconds), 3))
        configure_backends(self.device)

    def pair(self, deadline: float) -> None:
        from benchmarks.evaluator import Evaluator
        from nst_batch.core import StyleConfig, bf16_is_native, stylize

        content = self.photo(*self._shape(self.sizes.pair), seed=3)
        evaluator = Evaluator(self.features, content, self.painting)
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and not bf16_is_native(self.device):
                self.results.put("pair_s_bf16", None)
                self.results.put("pair_distances_bf16", "bf16 is not native here")
                continue
            cfg = StyleConfig(size=self.sizes.pair, precision=precision)
            if self.sizes.pair_iterations is not None:
                cfg = replace(cfg, scales=(1.0,), iterations=self.sizes.pair_iterations[:1])
            _sync(self.device)
            began = time.perf_counter()
            result = stylize(content, self.features, cfg, styles=[self.painting])
            _sync(self.device)
            seconds = time.perf_counter() - began
            d = evaluator(result.image.float())
            self.results.put(f"pair_s_{precision}", round(seconds, 2))
            self.results.put(f"pair_distances_{precision}", {"content": round(d.content, 4), "style": round(d.style, 4),
                                                             "graphed": [s.graphed for s in result.scales]})

    def pairs_per_hour(self, deadline: float) -> None:
        """6 photos of mixed shapes x 1 painting through run_pair, k pairs per GPU at once."""
        from PIL import Image

        from nst_batch.tasks.pair import devices
        from nst_batch.tasks.pair.produce import run_pair
        from nst_batch.tasks.planning.plan import load_plan

        work = Path(tempfile.mkdtemp(prefix="nst-gpu-check-"))
        for i, (h, w) in enumerate(self.sizes.photos):
            _save(self.photo(h, w, seed=i), work / "photos" / f"p{i}.png", Image)
        _save(self.painting, work / "styles" / "s.png", Image)
        schedule = "" if self.sizes.pair_iterations is None else f", scales: [1.0], iterations: {list(self.sizes.pair_iterations[:1])}"
        for k in (1, 2, 3):
            if k > 1 and time.monotonic() > deadline:
                self.results.put(f"pairs_per_hour_k{k}", None)
                continue
            (work / "m.yaml").write_text(f"output: out-k{k}\ndevice: {'cuda' if self.device.type == 'cuda' else 'cpu'}\n"
                                         f"defaults: {{size: {self.sizes.pair}{schedule}}}\nstyles: {{s: styles/s.png}}\n"
                                         "contents: [photos/*.png]\n")
            plan = load_plan(str(work / "m.yaml"))
            os.environ[devices.PAIRS_PER_GPU_ENV] = str(k)
            devices._pools.clear()  # the pool is sized once per process; a new k needs a new one
            slots = k * max(1, torch.cuda.device_count()) if self.device.type == "cuda" else k
            began = time.perf_counter()
            with ThreadPoolExecutor(slots) as pool:
                rows = list(pool.map(run_pair, plan.pairs, [plan.settings] * len(plan.pairs)))
            seconds = time.perf_counter() - began
            produced = sum(r.status == "produced" for r in rows)
            self.results.put(f"pairs_per_hour_k{k}", round(3600 * produced / seconds))
        devices._pools.clear()

    def memory(self, deadline: float) -> None:
        from nst_batch.core import StyleConfig, stylize
        from nst_batch.core.memory import estimate_memory

        h, w = self._shape(self.sizes.memory)
        cfg = StyleConfig(size=self.sizes.memory, scales=(1.0,), iterations=(3,), early_stop_rtol=0.0)
        estimate = estimate_memory(cfg, h, w, self.device.type).total
        figure: dict[str, Any] = {"size": self.sizes.memory, "estimate_mib": round(estimate / 2**20)}
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            stylize(self.photo(h, w), self.features, cfg, styles=[self.painting])
            reserved = torch.cuda.max_memory_reserved(self.device)
            figure.update({"peak_reserved_mib": round(reserved / 2**20), "estimate_covers_reserved": estimate >= reserved})
        self.results.put("memory_2048", figure)

    @staticmethod
    def _shape(side: int) -> tuple[int, int]:
        return side, side * 3 // 4  # portrait 4:3, as docs/performance.md's 512-px figures


def full_history_lbfgs(n: int, device: torch.device) -> tuple[Any, list[torch.Tensor]]:
    """A DeviceLBFGS of the default history, filled, and two gradients to time its direction with."""
    from nst_batch.core import StyleConfig
    from nst_batch.core.lbfgs import DeviceLBFGS

    lbfgs = DeviceLBFGS(n, StyleConfig().lbfgs_history, device)
    gen = torch.Generator(device=device).manual_seed(0)
    grads = [torch.randn(n, device=device, generator=gen) for _ in range(2)]
    for i in range(StyleConfig().lbfgs_history + 2):  # a full history first
        lbfgs.direction(grads[i % 2] * (1 + i))
    return lbfgs, grads


def _save(image: torch.Tensor, path: Path, pil: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    pil.fromarray(array).save(path)


def run(device: torch.device, sizes: Sizes, results: Results, budget_scale: float = 1.0) -> int:
    """Every section in order, each within its budget; a section that fails records its error in
    one line and the next one runs. Returns how many failed."""
    results.put("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    results.put("torch", torch.__version__)
    check = Check(device, sizes, results)
    failed = 0
    for name, budget in BUDGETS.items():
        began = time.monotonic()
        try:
            getattr(check, name)(began + budget * budget_scale)
        except Exception as exc:  # noqa: BLE001 - one section's failure must not cost the others
            failed += 1
            results.put(f"{name}_error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        results.put(f"{name}_seconds", round(time.monotonic() - began, 1))
    return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="every section at tiny sizes on the CPU (the test suite's dry run)")
    p.add_argument("--json", default=None, help="default: benchmarks/results/gpu-<date>.json (--cpu: .bench/gpu-check-cpu.json)")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (use --cpu for the dry run)", file=sys.stderr)
        return 2
    default = ".bench/gpu-check-cpu.json" if args.cpu else f"benchmarks/results/gpu-{datetime.date.today().isoformat()}.json"
    results = Results(Path(args.json or default))
    failed = run(device, CPU if args.cpu else GPU, results, 0.2 if args.cpu else 1.0)
    print(f"gpu-check: {len(results.data)} figures in {results.path}; {failed} section(s) failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
