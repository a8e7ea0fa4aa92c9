"""The optimisation loop of one scale: L-BFGS (or Adam) on the pixels, the best iterate, early
stopping, NaN checks and progress, in one skeleton for every device.

What differs between devices is only how one iteration is taken (a :class:`_Stepper`):

- on the CPU, torch's L-BFGS (or Adam) through a closure;
- on CUDA, :class:`~nst_batch.core.lbfgs.DeviceLBFGS`, which never reads a value back, and, once the
  first iterations have run, the whole iteration (evaluation, backward, direction, step)
  captured in one CUDA graph and replayed: one launch instead of hundreds.

The loop optimises a batch: B images of one shape go through the network as one tensor, each
with its own loss (the objective returns one per image), its own L-BFGS history and its own stop.
The images never meet: the gradient of the summed losses with respect to one image is its own
loss's gradient (nothing in VGG-19 or the losses mixes images), so each image's iterates are those
of its run alone, up to the floating-point order of a batched convolution. An image that stops
(early stopping) is frozen: it stays in the batch, which keeps every shape (and a CUDA graph)
fixed, its best iterate and losses no longer change, and the batch ends when every image has
stopped. B = 1 is the loop of a single image.

On CUDA a scale's graph can outlive its batch (:class:`GraphCache`): the next batch of the same
shape copies its targets and start into the tensors the graph was captured on and replays it, so
capture is paid once per shape, not once per batch.

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
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nst_batch.core.config import StyleConfig
from nst_batch.core.errors import CaptureError, NonFiniteLossError
from nst_batch.core.lbfgs import DeviceLBFGS

# objective(x) -> (total loss, weighted terms) of a batch x (B, C, H, W): each a (B,) tensor on
# x's device, one value per image (a loss that depended on another image would couple their runs).
Objective = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]


@dataclass(frozen=True)
class IterationEvent:
    """One iteration, as the loop tells its hook. ``losses`` and ``image`` (the best iterate) are
    given only at report points and at the end of the scale, where reading them back is paid for."""

    iteration: int  # 1-based within the scale
    losses: dict[str, float] | None = None
    scale_done: bool = False
    stopped_early: bool = False
    image: Tensor | None = None  # (1, C, H, W)
    index: int = 0  # the image's place in the batch


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
    graph_kept: bool = False  # the graph was an earlier batch's (GraphCache)


def optimize_scale(
    start: Tensor, objective: Objective, cfg: StyleConfig, max_iterations: int, **options: Any
) -> ScaleOutcome:
    """:func:`optimize_batch` of one image (``start`` is (1, C, H, W))."""
    return optimize_batch(start, objective, cfg, max_iterations, **options)[0]


def optimize_batch(
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
    reuse: Reuse | None = None,
) -> list[ScaleOutcome]:
    """Minimise ``objective`` over the pixels of each image of ``start`` (B, C, H, W) for up to
    ``max_iterations`` steps; one outcome per image.

    Returns each image's best evaluated iterate rather than its last one: without a line search,
    L-BFGS's last step is not guaranteed to lower the loss, and the best one's losses are known
    exactly.

    ``device_resident`` (default: on CUDA) takes L-BFGS steps without host reads; ``graphs``
    (default: on CUDA) replays each iteration from a CUDA graph once captured. ``to_image`` maps
    the optimised variable to the image (a parameterisation, see nst_batch.core.precondition):
    the images given to the hook and returned are images, not the variable. The hook hears of
    each image (``IterationEvent.index``) at every iteration until it stops, then once more with
    ``scale_done``.

    ``reuse`` keeps the scale's graphed stepper for the next batch of this shape, or takes the one
    an earlier batch kept (see :class:`GraphCache`); it changes nothing where graphs do not apply.
    """
    image_of = _image_map(to_image)
    began = time.perf_counter()
    batch = start.shape[0]
    if max_iterations == 0:
        return [
            ScaleOutcome(image_of(start.detach())[i : i + 1], 0, False, {}, time.perf_counter() - began)
            for i in range(batch)
        ]
    on_device = _on_cuda(start.device) if device_resident is None else device_resident
    stepper = _make_stepper(
        start, objective, cfg, on_device, _on_cuda(start.device) if graphs is None else graphs, reuse
    )
    book = _Book(stepper.current(), stepper.evaluated, check_every=report_every if on_device else 1)
    last = [0] * batch  # the iteration each image stopped at
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        loss, terms = stepper.step()
        book.record(loss, terms)
        report = iteration % report_every == 0 or iteration == max_iterations
        if report or iteration % book.check_every == 0:
            book.check(iteration, where)
            stopping = [i for i in book.running() if _converged(book.best_history[i], cfg)]
            for i in stopping:
                last[i] = iteration
            book.stop(stopping)
            stepper.stop(stopping)
        if on_iteration is not None:
            _tell(on_iteration, book, iteration, terms, loss, image_of, report and iteration < max_iterations)
        if not book.running():
            break
    losses = book.final_losses()
    best = image_of(book.best_x)
    graphed, error = stepper.graphed()
    seconds = time.perf_counter() - began
    outcomes = []
    for i in range(batch):
        outcome = ScaleOutcome(
            best[i : i + 1],
            last[i] if book.stopped[i] else iteration,
            book.stopped[i],
            losses[i],
            seconds,
            graphed,
            error,
            stepper.kept,
        )
        if on_iteration is not None:
            on_iteration(
                IterationEvent(outcome.iterations, outcome.losses, True, outcome.stopped_early, outcome.image, i)
            )
        outcomes.append(outcome)
    return outcomes


def _tell(
    hook: IterationHook,
    book: _Book,
    iteration: int,
    terms: dict[str, Tensor],
    loss: Tensor,
    image_of: Callable[[Tensor], Tensor],
    report: bool,
) -> None:
    """Each running image's event at this iteration; losses and the best iterate at report points."""
    running = book.running()
    values = _per_image(terms, loss) if report else None
    images = image_of(book.best_x) if report and running else None
    for i in running:
        hook(
            IterationEvent(
                iteration,
                values[i] if values else None,
                image=images[i : i + 1] if images is not None else None,
                index=i,
            )
        )


def _image_map(to_image: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    if to_image is None:
        return lambda x: x

    def image_of(x: Tensor) -> Tensor:
        with torch.no_grad():
            return to_image(x.detach()).detach()

    return image_of


class _Book:
    """Per image of the batch: the best evaluated iterate, its loss and terms (kept on the device),
    the losses read back at check points, and whether it has stopped (from then on nothing of it
    changes: its later evaluations, of a point it never stepped to alone, are not recorded)."""

    def __init__(self, x: Tensor, evaluated: Tensor, check_every: int) -> None:
        batch = x.shape[0]
        self.check_every = check_every
        self.evaluated = evaluated  # the points the last step evaluated (the stepper's: a graph writes them)
        self.best_x = x.detach().clone()
        self.best_loss = torch.full((batch,), math.inf, device=x.device)
        self.best_terms: dict[str, Tensor] = {}
        self.best_history: list[list[float]] = [
            [] for _ in range(batch)
        ]  # each image's best loss after each iteration, as read back
        self.stopped = [False] * batch
        self._recording = torch.ones(
            batch, dtype=torch.bool, device=x.device
        )  # on the device: the loop never waits to select
        self._pending: list[Tensor] = []  # every evaluated loss since the last check, (B,) each
        self._pending_best: list[Tensor] = []

    def running(self) -> list[int]:
        return [i for i, stopped in enumerate(self.stopped) if not stopped]

    def stop(self, images: list[int]) -> None:
        for i in images:
            self.stopped[i] = True
            self._recording[i] = False

    def record(self, loss: Tensor, terms: dict[str, Tensor]) -> None:
        loss = loss.detach().float().reshape(-1).clone()  # a graph's output is overwritten by the next replay
        better = (loss < self.best_loss) & self._recording
        self.best_loss = torch.where(better, loss, self.best_loss)
        self.best_x.copy_(torch.where(better.view(-1, *[1] * (self.best_x.dim() - 1)), self.evaluated, self.best_x))
        self.best_terms = {
            k: torch.where(better, v.float().reshape(-1), self.best_terms[k])
            if self.best_terms
            else v.float().reshape(-1).clone()
            for k, v in terms.items()
        }
        self._pending.append(loss)
        self._pending_best.append(self.best_loss)

    def check(self, iteration: int, where: str) -> None:
        """Read the losses since the last check: a NaN of a running image stops the run, naming its
        iteration (and the image, in a batch)."""
        values = torch.stack(self._pending).tolist()  # (iterations, B)
        first = iteration - len(values) + 1
        running = self.running()
        for offset, row in enumerate(values):
            for i in running:
                if not math.isfinite(row[i]):
                    image = f"image {i + 1} of {len(row)}, " if len(row) > 1 else ""
                    raise NonFiniteLossError(
                        f"the loss became {row[i]} at {where}{image}iteration {first + offset}: lower the "
                        f"content/style/tv weights "
                        "or check the input images"
                    )
        for row in torch.stack(self._pending_best).tolist():
            for i in running:
                self.best_history[i].append(row[i])
        self._pending.clear()
        self._pending_best.clear()

    def final_losses(self) -> list[dict[str, float]]:
        return _per_image(self.best_terms, self.best_loss) if self.best_terms else [{} for _ in self.stopped]


class _Stepper:
    """Takes one iteration of every image of the batch: evaluates the objective at the current
    points (writing them to ``evaluated``, its own, which a graph writes too), moves each running
    image, and returns the losses and terms at the evaluated points, (B,) each."""

    evaluated: Tensor
    kept = False  # restarted for another batch than the one it was made for (GraphCache)

    def step(self) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def current(self) -> Tensor:
        """The batch's current points, (B, C, H, W)."""
        raise NotImplementedError

    def stop(self, images: list[int]) -> None:
        """From now on, leave these images where they are."""
        raise NotImplementedError

    def graphed(self) -> tuple[bool | None, str]:
        """Whether the iterations replayed from a CUDA graph (None: not a graphed stepper), and the
        capture's error if it failed."""
        return None, ""


def _on_cuda(device: torch.device) -> bool:
    """Where the device-resident, graphed path is the default (a test makes it the CPU's)."""
    return device.type == "cuda"


def _make_stepper(
    start: Tensor, objective: Objective, cfg: StyleConfig, on_device: bool, graphs: bool, reuse: Reuse | None = None
) -> _Stepper:
    if cfg.optimizer == "lbfgs" and on_device:
        if not graphs:
            return _DeviceStepper(start, objective, cfg)
        if reuse is None:
            return _GraphedStepper(start, objective, cfg)
        return reuse.cache.stepper(reuse, start, lambda: _GraphedStepper(start, objective, cfg))
    return _TorchStepper(start, objective, cfg)


class _TorchStepper(_Stepper):
    """torch.optim's L-BFGS (or Adam), one optimiser per image (the CPU path). Each image is a leaf
    of its own, so each optimiser sees only its image's gradient; the batch is their concatenation,
    evaluated once, and the summed losses differentiated once: each optimiser's closure then
    returns its image's loss, already evaluated (with ``max_iter=1`` torch calls it exactly once,
    at the start of the step, as it would call its own)."""

    def __init__(self, start: Tensor, objective: Objective, cfg: StyleConfig) -> None:
        self.xs = [x.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True) for x in start.split(1)]
        self.evaluated = start.detach().clone()
        self.objective, self.cfg = objective, cfg
        self.optimizers = [_make_optimizer(x, cfg) for x in self.xs]
        self.running = [True] * len(self.xs)
        self.scale: Tensor | None = None

    def current(self) -> Tensor:
        return self.xs[0] if len(self.xs) == 1 else torch.cat(self.xs)

    def stop(self, images: list[int]) -> None:
        for i in images:
            self.running[i] = False

    def step(self) -> tuple[Tensor, dict[str, Tensor]]:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=False)
        x = self.current()
        self.evaluated.copy_(x.detach())
        total, terms = self.objective(x)
        if self.scale is None:
            self.scale = _loss_scale(total)
        normalised = total / self.scale
        normalised.sum().backward()
        values = normalised.detach()
        for i, optimizer in enumerate(self.optimizers):
            if not self.running[i]:
                continue
            if self.cfg.optimizer == "adam":
                optimizer.step()
                with torch.no_grad():
                    self.xs[i].clamp_(0, 1)  # Adam keeps the box constraint at every step; L-BFGS is clamped per scale
            else:
                optimizer.step(lambda v=values[i]: v)  # type: ignore[misc]
        return total.detach(), terms


class _DeviceStepper(_Stepper):
    """:class:`DeviceLBFGS`, one per image: the same algorithm as torch's L-BFGS with no host reads."""

    def __init__(self, start: Tensor, objective: Objective, cfg: StyleConfig) -> None:
        self.x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        self.evaluated = start.detach().clone()
        self.objective = objective
        numel = self.x[0].numel()
        self.lbfgs = [
            DeviceLBFGS(numel, cfg.lbfgs_history, self.x.device, self.x.dtype) for _ in range(self.x.shape[0])
        ]
        # On the device, read by every step (and by a captured graph): stopping an image writes it.
        self.running = torch.ones(self.x.shape[0], dtype=torch.bool, device=self.x.device)
        self.scale: Tensor | None = None
        self.rescale = True  # the next iteration is a batch's first: it sets the loss scale

    def current(self) -> Tensor:
        return self.x

    def stop(self, images: list[int]) -> None:
        for i in images:
            self.running[i] = False

    def restart(self, start: Tensor) -> None:
        """Start over from ``start`` (a new batch of the same shape), in the same tensors: the
        points, a cleared L-BFGS history, every image running, the loss scale set anew."""
        with torch.no_grad():
            self.x.copy_(start)
        self.x.grad = None
        for lbfgs in self.lbfgs:
            lbfgs.reset()
        self.running.fill_(True)
        self.rescale = True
        self.kept = True

    def _iterate(self) -> tuple[Tensor, dict[str, Tensor]]:
        total, terms = self.objective(self.x)
        if self.rescale:  # a batch's first iteration only: never inside a captured graph
            scale = _loss_scale(total)
            # Into the same tensor once there is one: a graph captured on it reads it at every replay.
            self.scale = scale if self.scale is None else self.scale.copy_(scale)
            self.rescale = False
        assert self.scale is not None
        (total / self.scale).sum().backward()
        assert self.x.grad is not None
        with torch.no_grad():
            self.evaluated.copy_(self.x)
            flat, grads = self.x.view(len(self.lbfgs), -1), self.x.grad.reshape(len(self.lbfgs), -1)
            for i, lbfgs in enumerate(self.lbfgs):
                # A select, not a product: a stopped image's direction may be anything, NaN included.
                flat[i].add_(torch.where(self.running[i], lbfgs.direction(grads[i]), 0.0))
        return total.detach(), {k: v.detach() for k, v in terms.items()}

    def step(self) -> tuple[Tensor, dict[str, Tensor]]:
        self.x.grad = None
        return self._iterate()


class _GraphedStepper(_DeviceStepper):
    """The device stepper, with its iteration captured once in a CUDA graph and replayed.

    The first iterations run eagerly on a side stream (cuDNN picks its algorithms, L-BFGS leaves
    its first-step branch, the allocator settles); then one iteration is captured. Shapes are
    fixed within a scale, so every later iteration is the same graph on the same tensors. A
    stepper kept for the next batch of its shape (:meth:`restart`) runs that batch's first
    iteration eagerly (L-BFGS's first step and the loss scale are not in the graph) and replays
    every later one: no warm-up, no capture.

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

    def step(self) -> tuple[Tensor, dict[str, Tensor]]:
        self.count += 1
        if self.graph is not None:
            if self.rescale:  # a new batch's first iteration (restart): not in the graph
                return self._eager()
            CUDA.replay(self.graph)
            assert self.outputs is not None
            return self.outputs
        if self.error or self.count <= self.WARMUP or CUDA.disabled():
            if CUDA.disabled() and not self.error:
                self.error = f"CUDA graphs are off in this process after a failed capture: {CUDA.disabled()}"
            return self._eager()
        return self._capture()

    def _eager(self) -> tuple[Tensor, dict[str, Tensor]]:
        if self.error:
            return super().step()
        with CUDA.on_side_stream(self.side, self.x.device):  # warm-up off the default stream, as capture requires
            return super().step()

    def _capture(self) -> tuple[Tensor, dict[str, Tensor]]:
        try:
            # One whole iteration: the gradient is unset first, so the backward inside the graph
            # allocates it from the graph's pool and each replay writes it anew.
            self.graph, self.outputs = CUDA.capture(lambda: _DeviceStepper.step(self), self.x.device)
        except Exception as exc:  # noqa: BLE001 - capture is an optimisation; eager gives the same result
            self.graph, self.outputs = None, None
            self.error = " ".join(str(exc).split())[:300] or type(exc).__name__
            CUDA.disable(self.error)
            return super().step()
        CUDA.replay(self.graph)  # capture records the work; this runs it
        return self.outputs


@dataclass(frozen=True)
class Reuse:
    """Where one scale's graphed stepper is kept for the next batch: ``cache``, under ``shape``
    (what must not change for a graph to apply again: the batch's shape, its settings) and ``key``
    (the scale), with ``buffers``: every tensor the objective reads that is the batch's own (its
    targets, its start), in an order that does not depend on their values. The next batch's
    buffers are copied into these, so they must be the objective's own copies, never tensors
    another batch or a cache shares."""

    cache: GraphCache
    shape: Hashable
    key: Hashable
    buffers: Sequence[Tensor]


@dataclass
class _Kept:
    stepper: _GraphedStepper
    buffers: Sequence[Tensor]


class GraphCache:
    """The graphed steppers of one batch shape, kept so that each scale's CUDA graph is captured
    once per shape and replayed for every later batch of it (capture, warm-up and cuDNN's choices
    paid once per shape, not once per batch).

    A kept stepper is bound to the first batch's objective: its graph replays kernels on that
    objective's tensors. A later batch builds its objective as usual (its photos' features, its
    targets); then its buffers are copied into the kept ones (same count, shapes and dtypes, else
    the scale captures anew), its start into the stepper, and its L-BFGS history is cleared.

    One shape at a time: a batch of another shape drops what the cache held before it captures,
    so the graphs alive are one shape's, each scale's (the memory guard counts the coarser scales'
    beside the finest: nst_batch.core.memory); :attr:`shape` says which. A stepper whose capture
    failed is never replayed: the next batch makes its own. Drop the cache, or :meth:`clear` it,
    to free the memory.
    """

    def __init__(self) -> None:
        self.shape: Hashable = None  # the ``Reuse.shape`` of what it holds; None: nothing
        self._kept: dict[Hashable, _Kept] = {}
        self.captured = 0  # steppers made (each captures, unless graphs are off)
        self.reused = 0  # scales that replayed a kept stepper's graph

    def clear(self) -> None:
        self.shape, self._kept = None, {}

    def stepper(self, reuse: Reuse, start: Tensor, make: Callable[[], _GraphedStepper]) -> _GraphedStepper:
        if reuse.shape != self.shape:
            self.clear()
            self.shape = reuse.shape
        kept = self._kept.pop(reuse.key, None)
        if (
            kept is not None
            and kept.stepper.graph is not None
            and not CUDA.disabled()
            and _load(kept.buffers, reuse.buffers)
        ):
            kept.stepper.restart(start)
            self._kept[reuse.key] = kept
            self.reused += 1
            return kept.stepper
        del kept  # its graph's memory goes before the new capture
        stepper = make()
        self._kept[reuse.key] = _Kept(stepper, list(reuse.buffers))
        self.captured += 1
        return stepper


def _load(kept: Sequence[Tensor], new: Sequence[Tensor]) -> bool:
    """Copy ``new`` into ``kept`` where they match one for one; False (nothing copied) where not."""
    if len(kept) != len(new) or any(
        a.shape != b.shape or a.dtype != b.dtype or a.device != b.device for a, b in zip(kept, new, strict=True)
    ):
        return False
    with torch.no_grad():
        for a, b in zip(kept, new, strict=True):
            a.copy_(b)
    return True


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
            warnings.warn(
                f"CUDA graph capture failed ({reason}); this process runs eagerly from now on (same results, slower)",
                RuntimeWarning,
                stacklevel=3,
            )

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
    return torch.optim.LBFGS(
        [x], lr=1.0, max_iter=1, history_size=cfg.lbfgs_history, tolerance_grad=-1.0, tolerance_change=-1.0
    )


def _converged(best_history: list[float], cfg: StyleConfig) -> bool:
    window = cfg.early_stop_window
    if cfg.early_stop_rtol <= 0 or len(best_history) <= window:
        return False
    before, now = best_history[-1 - window], best_history[-1]
    return (before - now) <= cfg.early_stop_rtol * abs(now)


def _per_image(terms: dict[str, Tensor], total: Tensor) -> list[dict[str, float]]:
    """Each image's terms and total as numbers (one read per term)."""
    columns = {k: v.detach().float().reshape(-1).tolist() for k, v in terms.items()}
    totals = total.detach().float().reshape(-1).tolist()
    return [{**{k: values[i] for k, values in columns.items()}, "total": totals[i]} for i in range(len(totals))]
