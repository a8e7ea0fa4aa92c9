"""The optimisation loop of one scale: L-BFGS (or Adam) on the pixels, the best iterate, early
stopping, NaN checks and progress, in one skeleton for every device.

What differs between devices is only how one iteration is taken (a :class:`_Stepper`):

- on the CPU, torch's L-BFGS (or Adam) through a closure;
- on CUDA, :class:`~nst_batch.core.lbfgs.DeviceLBFGS`, which never reads a value back, and, once the
  first iterations have run, the whole iteration (evaluation, backward, direction, step)
  captured in one CUDA graph and replayed: one launch instead of hundreds.

The loop keeps the best evaluated iterate with device-side selects and reads losses back only
where it checks them: every iteration on the CPU (a read costs nothing there), at report points
on CUDA (so a NaN is reported, and an early stop happens, up to ``report_every - 1`` iterations
later than on the CPU).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nst_batch.core.config import StyleConfig
from nst_batch.core.errors import CaptureError, NonFiniteLossError
from nst_batch.core.lbfgs import DeviceLBFGS

# objective(x) -> (total loss, weighted terms); both scalars on x's device.
Objective = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]


@dataclass(frozen=True)
class IterationEvent:
    """One iteration, as the loop tells its hook. ``losses`` and ``image`` (the best iterate) are
    given only at report points and at the end of the scale, where reading them back is paid for."""

    iteration: int  # 1-based within the scale
    losses: dict[str, float] | None = None
    scale_done: bool = False
    stopped_early: bool = False
    image: Tensor | None = None


IterationHook = Callable[[IterationEvent], None]


@dataclass(frozen=True)
class ScaleOutcome:
    image: Tensor  # the best iterate seen, detached
    iterations: int
    stopped_early: bool
    losses: dict[str, float]
    seconds: float
    graphed: bool | None = None  # replayed from a CUDA graph; None: graphs do not apply; False: capture failed
    capture_error: str = ""


def optimize_scale(
    start: Tensor,
    objective: Objective,
    cfg: StyleConfig,
    max_iterations: int,
    *,
    on_iteration: IterationHook | None = None,
    report_every: int = 10,
    where: str = "",
    device_resident: bool | None = None,
    graphs: bool | None = None,
    to_image: Callable[[Tensor], Tensor] | None = None,
) -> ScaleOutcome:
    """Minimise ``objective`` over the pixels of ``start`` for up to ``max_iterations`` steps.

    Returns the best evaluated iterate rather than the last one: without a line search, L-BFGS's
    last step is not guaranteed to lower the loss, and the best one's losses are known exactly.

    ``device_resident`` (default: on CUDA) takes L-BFGS steps without host reads; ``graphs``
    (default: on CUDA) replays each iteration from a CUDA graph once captured. ``to_image`` maps
    the optimised variable to the image (a parameterisation, see nst_batch.core.precondition):
    the images given to the hook and returned are images, not the variable.
    """
    image_of = _image_map(to_image)
    began = time.perf_counter()
    on_device = start.device.type == "cuda" if device_resident is None else device_resident
    stepper = _make_stepper(start, objective, cfg, on_device, start.device.type == "cuda" if graphs is None else graphs)
    book = _Book(stepper.x, check_every=report_every if on_device else 1)
    iteration, stopped_early = 0, False
    for iteration in range(1, max_iterations + 1):
        loss, terms = stepper.step(book.evaluated)
        book.record(loss, terms)
        report = iteration % report_every == 0 or iteration == max_iterations
        if report or iteration % book.check_every == 0:
            book.check(iteration, where)
            stopped_early = _converged(book.best_history, cfg)
        done = stopped_early or iteration == max_iterations
        if on_iteration is not None:
            shown = report and not done
            on_iteration(IterationEvent(iteration, _to_floats(terms, float(loss)) if shown else None,
                                        image=image_of(book.best_x) if shown else None))
        if stopped_early:
            break
    if max_iterations == 0:
        return ScaleOutcome(image_of(start.detach()), 0, False, {}, time.perf_counter() - began)
    losses = book.final_losses()
    best = image_of(book.best_x)
    if on_iteration is not None:
        on_iteration(IterationEvent(iteration, losses, True, stopped_early, best))
    graphed, error = stepper.graphed()
    return ScaleOutcome(best, iteration, stopped_early, losses, time.perf_counter() - began, graphed, error)


def _image_map(to_image: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    if to_image is None:
        return lambda x: x

    def image_of(x: Tensor) -> Tensor:
        with torch.no_grad():
            return to_image(x.detach()).detach()

    return image_of


class _Book:
    """The best evaluated iterate, its loss and terms (kept on the device), and the losses read
    back at check points."""

    def __init__(self, x: Tensor, check_every: int) -> None:
        self.check_every = check_every
        self.evaluated = x.detach().clone()  # the point the next step evaluates (the stepper fills it)
        self.best_x = x.detach().clone()
        self.best_loss = torch.full((), math.inf, device=x.device)
        self.best_terms: dict[str, Tensor] = {}
        self.best_history: list[float] = []  # the best loss after each iteration, as read back
        self._pending: list[Tensor] = []  # every evaluated loss since the last check
        self._pending_best: list[Tensor] = []

    def record(self, loss: Tensor, terms: dict[str, Tensor]) -> None:
        loss = loss.detach().float().clone()  # a graph's output is overwritten by the next replay
        better = loss < self.best_loss
        self.best_loss = torch.where(better, loss, self.best_loss)
        self.best_x.copy_(torch.where(better, self.evaluated, self.best_x))
        self.best_terms = {k: torch.where(better, v.float(), self.best_terms[k]) if self.best_terms else v.float().clone()
                           for k, v in terms.items()}
        self._pending.append(loss)
        self._pending_best.append(self.best_loss)

    def check(self, iteration: int, where: str) -> None:
        """Read the losses since the last check: a NaN stops the run, naming its iteration."""
        values = torch.stack(self._pending).tolist()
        first = iteration - len(values) + 1
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the loss became {value} at {where}iteration {first + offset}: lower the content/style/tv weights "
                    "or check the input images"
                )
        self.best_history += torch.stack(self._pending_best).tolist()
        self._pending.clear()
        self._pending_best.clear()

    def final_losses(self) -> dict[str, float]:
        return _to_floats(self.best_terms, float(self.best_loss)) if self.best_terms else {}


class _Stepper:
    """Takes one iteration: evaluates the objective at ``x`` (writing that point to ``evaluated``),
    moves ``x``, and returns the loss and terms at the evaluated point."""

    x: Tensor

    def step(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def graphed(self) -> tuple[bool | None, str]:
        """Whether the iterations replayed from a CUDA graph (None: not a graphed stepper), and the
        capture's error if it failed."""
        return None, ""


def _make_stepper(start: Tensor, objective: Objective, cfg: StyleConfig, on_device: bool, graphs: bool) -> _Stepper:
    if cfg.optimizer == "lbfgs" and on_device:
        return _GraphedStepper(start, objective, cfg) if graphs else _DeviceStepper(start, objective, cfg)
    return _TorchStepper(start, objective, cfg)


class _TorchStepper(_Stepper):
    """torch.optim's L-BFGS or Adam through a closure (the CPU path)."""

    def __init__(self, start: Tensor, objective: Objective, cfg: StyleConfig) -> None:
        self.x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        self.objective, self.cfg = objective, cfg
        self.optimizer = _make_optimizer(self.x, cfg)
        self.scale: Tensor | None = None
        self.terms: dict[str, Tensor] = {}
        self.total = torch.zeros(())

    def _closure(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=False)
        total, self.terms = self.objective(self.x)
        if self.scale is None:
            self.scale = _loss_scale(total)
        normalised = total / self.scale
        normalised.backward()
        self.total = total.detach()
        return normalised.detach()

    def step(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        evaluated.copy_(self.x.detach())
        if self.cfg.optimizer == "adam":
            self._closure()
            self.optimizer.step()
            with torch.no_grad():
                self.x.clamp_(0, 1)  # Adam keeps the box constraint at every step; L-BFGS is clamped per scale
        else:
            self.optimizer.step(self._closure)  # type: ignore[arg-type]
        return self.total, self.terms


class _DeviceStepper(_Stepper):
    """:class:`DeviceLBFGS`: the same algorithm as torch's L-BFGS with no host reads."""

    def __init__(self, start: Tensor, objective: Objective, cfg: StyleConfig) -> None:
        self.x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        self.objective = objective
        self.lbfgs = DeviceLBFGS(self.x.numel(), cfg.lbfgs_history, self.x.device, self.x.dtype)
        self.scale: Tensor | None = None

    def _iterate(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total, terms = self.objective(self.x)
        if self.scale is None:  # the first iteration only: never inside a captured graph
            self.scale = _loss_scale(total)
        (total / self.scale).backward()
        assert self.x.grad is not None
        with torch.no_grad():
            evaluated.copy_(self.x)
            self.x.add_(self.lbfgs.direction(self.x.grad.reshape(-1)).view_as(self.x))
        return total.detach(), {k: v.detach() for k, v in terms.items()}

    def step(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.x.grad = None
        return self._iterate(evaluated)


class _GraphedStepper(_DeviceStepper):
    """The device stepper, with its iteration captured once in a CUDA graph and replayed.

    The first iterations run eagerly on a side stream (cuDNN picks its algorithms, L-BFGS leaves
    its first-step branch, the allocator settles); then one iteration is captured. Shapes are
    fixed within a scale, so every later iteration is the same graph on the same tensors.

    Capture follows torch.cuda.graph's rules with k pairs per GPU in threads: each thread captures
    on a stream of its own for its device (the default capture stream is one per process, shared
    by every thread, and its owner is the first GPU that captured), captures are serialised, the
    warm-up side stream is made once per thread and device (PyTorch hands out streams from a pool
    of 32 per device, so one per scale would come round to a stream in use). A failed capture
    restores the thread's stream, turns graphs off for the process (the allocator may still think
    a capture is under way), warns once, and the scale goes on eagerly; an empty graph counts as a
    failure (its replay would do nothing). Every scale's outcome says whether it replayed.
    """

    WARMUP = 3

    def __init__(self, start: Tensor, objective: Objective, cfg: StyleConfig) -> None:
        super().__init__(start, objective, cfg)
        self.graph: Any = None
        self.outputs: tuple[Tensor, dict[str, Tensor]] | None = None
        self.error = ""
        self.count = 0
        self.side = CUDA.side_stream(start.device)

    def graphed(self) -> tuple[bool | None, str]:
        return self.graph is not None, self.error

    def step(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.count += 1
        if self.graph is not None:
            CUDA.replay(self.graph)
            assert self.outputs is not None
            return self.outputs
        if self.error or self.count <= self.WARMUP or CUDA.disabled():
            if CUDA.disabled() and not self.error:
                self.error = f"CUDA graphs are off in this process after a failed capture: {CUDA.disabled()}"
            return self._eager(evaluated)
        return self._capture(evaluated)

    def _eager(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.error:
            return super().step(evaluated)
        with CUDA.on_side_stream(self.side, self.x.device):  # warm-up off the default stream, as capture requires
            return super().step(evaluated)

    def _capture(self, evaluated: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        try:
            # One whole iteration: the gradient is unset first, so the backward inside the graph
            # allocates it from the graph's pool and each replay writes it anew.
            self.graph, self.outputs = CUDA.capture(lambda: _DeviceStepper.step(self, evaluated), self.x.device)
        except Exception as exc:  # noqa: BLE001 - capture is an optimisation; eager gives the same result
            self.graph, self.outputs = None, None
            self.error = " ".join(str(exc).split())[:300] or type(exc).__name__
            CUDA.disable(self.error)
            return super().step(evaluated)
        CUDA.replay(self.graph)  # capture records the work; this runs it
        return self.outputs


class CudaGraphs:
    """What the graphed stepper asks of CUDA, in one place (a test swaps in a CPU fake)."""

    def __init__(self) -> None:
        self._local = threading.local()  # per thread: {device index: (side stream, capture stream)}
        self._lock = threading.Lock()  # one capture at a time in the process
        self._disabled = ""
        self._warned = False

    def disabled(self) -> str:
        return self._disabled

    def disable(self, reason: str) -> None:
        """No capture after a failed one, in this process; one warning with the reason."""
        with self._lock:
            self._disabled = self._disabled or reason
            warn, self._warned = not self._warned, True
        if warn:
            warnings.warn(f"CUDA graph capture failed ({reason}); this process runs eagerly from now on (same results, slower)",
                          RuntimeWarning, stacklevel=3)

    def _streams(self, device: torch.device) -> tuple[Any, Any]:
        streams = getattr(self._local, "streams", None)
        if streams is None:
            streams = self._local.streams = {}
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in streams:
            streams[index] = (torch.cuda.Stream(device=index), torch.cuda.Stream(device=index))
        return streams[index]

    def side_stream(self, device: torch.device) -> Any:
        return self._streams(device)[0]

    @contextlib.contextmanager
    def on_side_stream(self, side: Any, device: torch.device) -> Iterator[None]:
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream(device).wait_stream(side)

    def capture(self, fn: Callable[[], Any], device: torch.device) -> tuple[Any, Any]:
        """A graph of what ``fn`` launches, and ``fn``'s outputs (which each replay rewrites)."""
        stream = self._streams(device)[1]
        previous = torch.cuda.current_stream(device)
        graph = torch.cuda.CUDAGraph()
        with self._lock:
            if self._disabled:
                raise CaptureError(self._disabled)
            try:
                stream.wait_stream(previous)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    # thread_local: other pairs on this GPU go on allocating and launching while this
                    # thread captures; "global" would make their calls fail.
                    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                        outputs = fn()
                empty = [w for w in caught if "empty" in str(w.message).lower()]
                if empty:
                    raise CaptureError(f"the captured graph is empty ({empty[0].message})")
            except BaseException:
                torch.cuda.set_stream(previous)  # graph.__exit__ does not restore it when capture_end raises
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize(device)
                raise
        previous.wait_stream(stream)
        return graph, outputs

    def replay(self, graph: Any) -> None:
        graph.replay()


CUDA = CudaGraphs()


def _loss_scale(total: Tensor) -> Tensor:
    # The optimiser sees the loss divided by its value at the start of the scale. The minimiser
    # is the same, but torch's L-BFGS has absolute thresholds (it skips curvature pairs with
    # y.s < 1e-10, then steps by the raw gradient): with losses of 1e8 and their huge gradients,
    # a skipped pair sends the pixels to +-1e6. Normalised, the run is independent of how the
    # weights are scaled overall, and only their ratios matter.
    return total.detach().abs().clamp_min(1e-12)


def _make_optimizer(x: Tensor, cfg: StyleConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam([x], lr=cfg.adam_lr)
    # max_iter=1: one step() is one evaluation, so the loop above sees every iteration. The
    # tolerances are off because stopping is ours (relative loss improvement, scale-free).
    return torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=cfg.lbfgs_history, tolerance_grad=-1.0, tolerance_change=-1.0)


def _converged(best_history: list[float], cfg: StyleConfig) -> bool:
    window = cfg.early_stop_window
    if cfg.early_stop_rtol <= 0 or len(best_history) <= window:
        return False
    before, now = best_history[-1 - window], best_history[-1]
    return (before - now) <= cfg.early_stop_rtol * abs(now)


def _to_floats(terms: dict[str, Tensor], total: float) -> dict[str, float]:
    return {**{k: float(v) for k, v in terms.items()}, "total": total}
