"""The first GPU run's figures, cheapest and most decisive first, each printed and appended to a
JSON file the moment it is measured (a timeout loses only what was not yet measured):

1. ``graph``: did the iteration replay from a CUDA graph (and the capture's error if not);
2. ``replay``: ms per iteration replaying the graph, at 512 px with the default objective (the
   last scale of the default schedule: two VGG passes, the image and its coarse-scale copy),
   against the same iteration run eagerly;
3. ``direction``: ms of the L-BFGS direction (history 50) inside a graph and eagerly;
4. ``setup``: seconds from a new photo shape to its first captured iteration, cuDNN autotuning on
   and off (each shape is new to the process); then a batch's first 5 iterations where an
   earlier batch of its shape left its graph (GraphCache: one eager iteration, then replays)
   against a batch that captures its own;
5. ``pair``: seconds per 512-px pair with the defaults, fp32 and bf16, with the evaluator's
   content and style distances;
6. ``pairs_per_hour``: through the real pair pipeline (nst_batch.tasks.pair.pipeline.run_pair, the device pool, the
   style cache) on 6 generated photos of mixed shapes, one at a time (batch 1), with k = 1, 2, 3
   pairs per GPU, every shape warmed first (cuDNN's tuning is the set-up figure's, not this one's);
7. ``collection``: 48 pairs of 8 mixed shapes (4:3, 3:2, 16:9, square; landscape and portrait) at
   512 px with the default schedule, through what the flow composes (its chunks, each chunk's
   pairs by nst_batch.tasks.pair.pipeline.run_pairs, as many chunks at once as the default
   runner's slots): batched (``batch: auto``) against one at a time, in one run; pairs per hour
   and the seconds per pair outside the optimisation. Not through Prefect itself (run_plan):
   Prefect and its server are not on the GPU machine's image, and carrying them does not fit;
8. ``memory``: peak reserved memory at 2048 px (enough iterations to capture the graph) against
   the memory guard's estimate.

Each figure row says how it ran: ``k`` (pairs per GPU), ``batch`` (photos a batch), ``graphed``
(the share of scales replayed from a CUDA graph), ``graph_kept`` (of scales whose graph an earlier
batch of the shape captured). Each section has its own time budget: its reps
stop when it is spent, and a section still running at its budget's end is interrupted (a
SIGALRM in the main thread) and recorded as over budget; the budgets and the start-up add to
what scripts/gpu-check.sh allows the benchmark, which with the tests before it fits 8 minutes.

Images are generated (tests/synthetic.py), so nothing outside the tree is needed but the wheels
scripts/gpu-check.sh carries. ``--cpu`` runs every section at tiny sizes on the CPU
(what the test suite does): figures a CPU cannot give (a graph's replay) are written as null.

    python -m benchmarks.gpu_check [--cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

# Section name -> its budget in seconds, enforced. With STARTUP_S (imports, the weights, CUDA's
# context) they add to scripts/gpu-check.sh's limit for the benchmark (a test checks).
BUDGETS = {
    "graph": 20,
    "replay": 25,
    "direction": 15,
    "setup": 45,
    "pair": 50,
    "pairs_per_hour": 55,
    "collection": 120,
    "memory": 25,
}
STARTUP_S = 25
KEYS = [
    "device",
    "torch",
    "graphed",
    "capture_error",
    "replay_ms_512",
    "eager_iteration_ms_512",
    "direction_ms_in_graph",
    "direction_ms_eager",
    "setup_s_autotune_on",
    "setup_s_autotune_off",
    "setup_s_new_graph",
    "setup_s_kept_graph",
    "pair_s_fp32",
    "pair_s_bf16",
    "pair_distances_fp32",
    "pair_distances_bf16",
    "pairs_per_hour_k1",
    "pairs_per_hour_k2",
    "pairs_per_hour_k3",
    "collection_batched",
    "collection_one_at_a_time",
    "memory_2048",
]


class OverBudget(Exception):
    """A section ran past its budget (raised in the main thread by a timer)."""


@contextlib.contextmanager
def enforced(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM: the main thread only; elsewhere, and where
    there is no such signal, the sections' own deadlines are all there is)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise OverBudget(f"over its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Sizes:
    replay: int
    pair: int
    memory: int
    shapes: tuple[tuple[int, int], ...]  # new photo shapes for the set-up figure, 3 per setting
    photos: tuple[tuple[int, int], ...]  # the mixed shapes of the pairs-per-hour batch
    pair_iterations: tuple[int, ...] | None  # None: the defaults' schedule
    reps: int


GPU = Sizes(
    512,
    512,
    2048,
    ((512, 384), (384, 512), (512, 341), (341, 512), (512, 288), (288, 512)),
    ((512, 384), (384, 512), (512, 512), (512, 341), (341, 512), (512, 288)),
    None,
    30,
)
CPU = Sizes(
    32,
    32,
    48,
    ((32, 24), (24, 32), (32, 21), (21, 32), (32, 18), (18, 32)),
    ((32, 24), (24, 32), (32, 32), (32, 21), (21, 32), (32, 18)),
    (2, 2),
    3,
)
# The 48-pair collection: 8 shapes (height, width) as cameras write them, 6 photos each; at 512
# px they fall into 8 working shapes and 8 buckets (383 and 341 snap to 384 and 344).
COLLECTION = (
    (3024, 4032),
    (4032, 3024),
    (4000, 6000),
    (6000, 4000),
    (1080, 1920),
    (1920, 1080),
    (3000, 3000),
    (2992, 4000),
)
COLLECTION_PAIRS = 48


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
        eager = opt._DeviceStepper(start, objective, cfg)
        for _ in range(3):
            eager.step()
        self.results.put(
            "eager_iteration_ms_512", _timed_ms(lambda: eager.step(), self.device, self.sizes.reps, deadline)
        )
        if self.device.type != "cuda":
            self.results.put("replay_ms_512", None)
            return
        graphed = opt._GraphedStepper(start, objective, cfg)
        for _ in range(graphed.WARMUP + 1):  # the warm-up and the capture, not timed
            graphed.step()
        ms = (
            _timed_ms(lambda: graphed.step(), self.device, self.sizes.reps, deadline)
            if graphed.graph is not None
            else None
        )
        self.results.put("replay_ms_512", ms)

    def direction(self, deadline: float) -> None:
        from nst_batch.core import optimize as opt

        h, w = self._shape(self.sizes.replay)
        lbfgs, grads = full_history_lbfgs(3 * h * w, self.device)
        self.results.put(
            "direction_ms_eager", _timed_ms(lambda: lbfgs.direction(grads[0]), self.device, self.sizes.reps, deadline)
        )
        if self.device.type != "cuda":
            self.results.put("direction_ms_in_graph", None)
            return
        graph, _ = opt.CUDA.capture(lambda: lbfgs.direction(grads[0]), self.device)
        self.results.put(
            "direction_ms_in_graph", _timed_ms(lambda: graph.replay(), self.device, self.sizes.reps, deadline)
        )

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
        self._kept_graph(deadline)

    def _kept_graph(self, deadline: float) -> None:
        """A batch's first iterations where its shape's graph was captured by an earlier batch
        (GraphCache: one eager iteration, then replays) against a batch that captures its own."""
        from nst_batch.core.optimize import GraphCache, Reuse, optimize_scale

        if self.device.type != "cuda" or time.monotonic() > deadline:
            self.results.put("setup_s_new_graph", None)
            self.results.put("setup_s_kept_graph", None)
            return
        objective, start, cfg = self.objective(*self._shape(self.sizes.replay))
        reuse = Reuse(GraphCache(), "benchmark", 0, [])  # one objective: nothing of its own to copy
        for figure in ("setup_s_new_graph", "setup_s_kept_graph"):
            _sync(self.device)
            began = time.perf_counter()
            optimize_scale(start, objective, cfg, 5, graphs=True, device_resident=True, reuse=reuse)
            _sync(self.device)
            self.results.put(figure, round(time.perf_counter() - began, 3))

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
            self.results.put(
                f"pair_distances_{precision}",
                {
                    "content": round(d.content, 4),
                    "style": round(d.style, 4),
                    "graphed": [s.graphed for s in result.scales],
                },
            )

    def pairs_per_hour(self, deadline: float) -> None:
        """6 photos of mixed shapes x 1 painting through run_pair, one at a time, k pairs per GPU at once."""
        from nst_batch.tasks.pair import device_pool as devices
        from nst_batch.tasks.pair.pipeline import run_pair

        work = Path(tempfile.mkdtemp(prefix="nst-gpu-check-"))
        photos = [(h, w) for h, w in self.sizes.photos]
        self._write_inputs(work, photos)
        self._warm(photos)
        for k in (1, 2, 3):
            if k > 1 and time.monotonic() > deadline:
                self.results.put(f"pairs_per_hour_k{k}", None)
                continue
            plan = self._plan(work, f"out-k{k}", batch=1)
            os.environ[devices.PAIRS_PER_GPU_ENV] = str(k)
            devices._pools.clear()  # the pool is sized once per process; a new k needs a new one
            slots = k * max(1, torch.cuda.device_count()) if self.device.type == "cuda" else k
            began = time.perf_counter()
            with ThreadPoolExecutor(slots) as pool:
                rows = list(pool.map(run_pair, plan.pairs, [plan.settings] * len(plan.pairs)))
            seconds = time.perf_counter() - began
            produced = sum(r.status == "produced" for r in rows)
            self.results.put(
                f"pairs_per_hour_k{k}",
                {
                    "pairs_per_hour": round(3600 * produced / seconds),
                    "k": k,
                    "batch": 1,
                    **_run_facts(work / f"out-k{k}"),
                },
            )
        os.environ.pop(devices.PAIRS_PER_GPU_ENV, None)
        devices._pools.clear()

    def collection(self, deadline: float) -> None:
        """48 pairs of mixed shapes, batched against one at a time (each gets half the budget: the
        chunks not started by then are left out, and the figure is over the pairs done)."""
        from nst_batch.tasks.pair import device_pool as devices
        from nst_batch.tasks.pair.pipeline import run_pairs
        from nst_batch.tasks.running.scheduling import bucket_keys, chunks

        work = Path(tempfile.mkdtemp(prefix="nst-gpu-collection-"))
        scale = self.sizes.pair / max(COLLECTION[0])
        shapes = [(max(8, round(h * scale)), max(8, round(w * scale))) for h, w in COLLECTION]
        photos = [shapes[i % len(shapes)] for i in range(COLLECTION_PAIRS)]
        self._write_inputs(work, photos)
        self._warm(sorted(set(photos)))
        devices._pools.clear()
        k = devices.pairs_per_gpu()
        slots = k * max(1, torch.cuda.device_count()) if self.device.type == "cuda" else 1  # the default runner's slots
        half = (deadline - time.monotonic()) / 2
        for key, batch in (("collection_batched", 0), ("collection_one_at_a_time", 1)):
            stop = time.monotonic() + half
            out = f"out-{key}"
            plan = self._plan(work, out, batch=batch)

            def chunk_of(pairs: list[Any], plan: Any = plan, stop: float = stop) -> int:
                if time.monotonic() > stop:
                    return 0
                return sum(getattr(r, "status", "") == "produced" for r in run_pairs(pairs, plan.settings))

            began = time.perf_counter()
            with ThreadPoolExecutor(slots) as pool:
                produced = sum(
                    pool.map(chunk_of, chunks(list(plan.pairs), slots, bucket_keys(plan.pairs, plan.settings)))
                )
            seconds = time.perf_counter() - began
            self.results.put(
                key,
                {
                    "pairs_per_hour": round(3600 * produced / seconds) if produced else 0,
                    "pairs": produced,
                    "k": k,
                    "batch": "auto" if batch == 0 else batch,
                    "seconds": round(seconds, 1),
                    **_run_facts(work / out),
                },
            )
        devices._pools.clear()

    def _write_inputs(self, work: Path, photos: list[tuple[int, int]]) -> None:
        from PIL import Image

        for i, (h, w) in enumerate(photos):
            _save(self.photo(h, w, seed=i), work / "photos" / f"p{i:02d}.png", Image)
        _save(self.painting, work / "styles" / "s.png", Image)

    def _plan(self, work: Path, out: str, batch: int) -> Any:
        from nst_batch.tasks.planning.plan import load_plan

        schedule = (
            ""
            if self.sizes.pair_iterations is None
            else f", scales: [1.0], iterations: {list(self.sizes.pair_iterations[:1])}"
        )
        (work / f"{out}.yaml").write_text(
            f"output: {out}\ndevice: {'cuda' if self.device.type == 'cuda' else 'cpu'}\nbatch: {batch}\n"
            f"defaults: {{size: {self.sizes.pair}{schedule}}}\nstyles: {{s: styles/s.png}}\n"
            "contents: [photos/*.png]\n"
        )
        return load_plan(str(work / f"{out}.yaml"))

    def _warm(self, shapes: list[tuple[int, int]]) -> None:
        """One short run of each photo shape, not timed: cuDNN tunes each new shape's convolutions
        once per process (the set-up section measures that); pairs per hour is the steady rate."""
        from nst_batch.core import StyleConfig, stylize

        cfg = StyleConfig(size=self.sizes.pair)
        cfg = replace(cfg, iterations=(1,) * cfg.num_scales, early_stop_rtol=0.0)
        for h, w in shapes:
            stylize(self.photo(h, w), self.features, cfg, styles=[self.painting])
        _sync(self.device)

    def memory(self, deadline: float) -> None:
        from nst_batch.core import StyleConfig, stylize
        from nst_batch.core.memory import estimate_memory
        from nst_batch.core.optimize import _GraphedStepper

        h, w = self._shape(self.sizes.memory)
        # Past the warm-up: the iteration is captured, and the graph's pool counts in the peak.
        cfg = StyleConfig(
            size=self.sizes.memory, scales=(1.0,), iterations=(_GraphedStepper.WARMUP + 3,), early_stop_rtol=0.0
        )
        estimate = estimate_memory(cfg, h, w, self.device.type).total
        figure: dict[str, Any] = {"size": self.sizes.memory, "estimate_mib": round(estimate / 2**20)}
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            result = stylize(self.photo(h, w), self.features, cfg, styles=[self.painting])
            reserved = torch.cuda.max_memory_reserved(self.device)
            figure.update(
                {
                    "peak_reserved_mib": round(reserved / 2**20),
                    "estimate_covers_reserved": estimate >= reserved,
                    "graphed": result.scales[-1].graphed,
                }
            )
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


def _run_facts(out: Path) -> dict[str, Any]:
    """From a run's sidecars: the share of scales replayed from a CUDA graph (None on a CPU) and of
    those whose graph an earlier batch captured, the largest batch, and the seconds per pair
    outside the optimisation (reading, decoding, set-up and targets, the judge, writing)."""
    sidecars = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "summary.json"]
    sidecars = [s for s in sidecars if "timings" in s]
    if not sidecars:
        return {"graphed": None, "graph_kept": None, "largest_batch": None, "setup_s_per_pair": None}
    scales = [sc for s in sidecars for sc in s.get("scales", []) if sc.get("graphed") is not None]
    outside = [s["wall_time_s"] - s["timings"].get("stylize", 0.0) for s in sidecars]
    return {
        "graphed": round(sum(bool(sc["graphed"]) for sc in scales) / len(scales), 3) if scales else None,
        "graph_kept": round(sum(bool(sc.get("graph_kept")) for sc in scales) / len(scales), 3) if scales else None,
        "largest_batch": max(s.get("batch", 1) for s in sidecars),
        "setup_s_per_pair": round(statistics.mean(outside), 3),
    }


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
            # The section's own deadline leaves it room to finish its last rep; the timer is the budget.
            with enforced(budget * budget_scale):
                getattr(check, name)(began + 0.8 * budget * budget_scale)
        except Exception as exc:  # noqa: BLE001 - one section's failure (or overrun) must not cost the others
            failed += 1
            results.put(f"{name}_error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        results.put(f"{name}_seconds", round(time.monotonic() - began, 1))
    return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cpu", action="store_true", help="every section at tiny sizes on the CPU (the test suite's dry run)"
    )
    p.add_argument(
        "--json", default=None, help="default: benchmarks/results/gpu-<date>.json (--cpu: .bench/gpu-check-cpu.json)"
    )
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (use --cpu for the dry run)", file=sys.stderr)
        return 2
    default = (
        ".bench/gpu-check-cpu.json" if args.cpu else f"benchmarks/results/gpu-{datetime.date.today().isoformat()}.json"
    )
    results = Results(Path(args.json or default))
    failed = run(device, CPU if args.cpu else GPU, results, 0.2 if args.cpu else 1.0)
    print(f"gpu-check: {len(results.data)} figures in {results.path}; {failed} section(s) failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
