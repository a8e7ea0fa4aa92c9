"""The optimisation loop of one scale: L-BFGS (or Adam) on the pixels, early stopping, NaN checks.

The closure only evaluates the objective and its gradient; the loop policy (best iterate,
early stop, progress) lives outside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nst_core.config import StyleConfig
from nst_core.errors import NonFiniteLossError
from nst_core.lbfgs import DeviceLBFGS

# objective(x) -> (total loss, weighted terms); both scalars on x's device.
Objective = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]
# on_iteration(iteration, losses or None, scale_done, stopped_early, best iterate or None); the
# losses and the image are given only at report points, where reading them back is paid for.
IterationHook = Callable[[int, dict[str, float] | None, bool, bool, Tensor | None], None]


@dataclass(frozen=True)
class ScaleOutcome:
    image: Tensor  # the best iterate seen, detached
    iterations: int
    stopped_early: bool
    losses: dict[str, float]
    seconds: float


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
) -> ScaleOutcome:
    """Minimise ``objective`` over the pixels of ``start`` for up to ``max_iterations`` steps.

    Returns the best evaluated iterate rather than the last one: without a line search, L-BFGS's
    last step is not guaranteed to lower the loss, and the best one's losses are known exactly.

    ``device_resident`` (default: on CUDA) runs L-BFGS without reading anything back between
    report points (see :func:`_optimize_on_device`); the CPU keeps torch's L-BFGS.
    """
    if device_resident is None:
        device_resident = start.device.type == "cuda"
    if device_resident and cfg.optimizer == "lbfgs":
        return _optimize_on_device(start, objective, cfg, max_iterations, on_iteration, report_every, where)
    began = time.perf_counter()
    x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer = _make_optimizer(x, cfg)
    terms_holder: list[dict[str, Tensor]] = [{}]
    # The optimiser sees the loss divided by its value at the start of the scale. The minimiser
    # is the same, but torch's L-BFGS has absolute thresholds (it skips curvature pairs with
    # y.s < 1e-10, then steps by the raw gradient): with losses of 1e8 and their huge gradients,
    # a skipped pair sends the pixels to +-1e6. Normalised, the run is independent of how the
    # weights are scaled overall, and only their ratios matter.
    loss_scale: list[Tensor] = []

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=False)
        total, terms = objective(x)
        if not loss_scale:
            loss_scale.append(total.detach().abs().clamp_min(1e-12))
        normalised = total / loss_scale[0]
        normalised.backward()
        terms_holder[0] = terms
        return normalised.detach()

    # Two image buffers, reused for the whole scale: the iterate being evaluated and the best so far.
    best_loss, best_x, best_terms = math.inf, x.detach().clone(), {}
    evaluated = torch.empty_like(best_x)
    best_history: list[float] = []
    iteration, stopped_early = 0, False
    for iteration in range(1, max_iterations + 1):
        evaluated.copy_(x.detach())
        loss = float(_step(optimizer, closure, x, cfg) * loss_scale[0])
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss} at {where}iteration {iteration}: lower the content/style/tv weights "
                "or check the input images"
            )
        if loss < best_loss:
            best_loss, best_terms = loss, terms_holder[0]
            best_x, evaluated = evaluated, best_x
        best_history.append(best_loss)
        stopped_early = _converged(best_history, cfg)
        done = stopped_early or iteration == max_iterations
        if on_iteration is not None:
            report = done or iteration % report_every == 0
            reported = report and not done
            on_iteration(iteration, _to_floats(terms_holder[0], loss) if reported else None, False, False,
                         best_x if reported else None)
        if stopped_early:
            break
    losses = _to_floats(best_terms, best_loss) if best_terms else {}
    if on_iteration is not None and max_iterations > 0:
        on_iteration(iteration, losses, True, stopped_early, best_x)
    image = best_x if max_iterations > 0 else start.detach()
    return ScaleOutcome(image, iteration, stopped_early, losses, time.perf_counter() - began)


def _optimize_on_device(start: Tensor, objective: Objective, cfg: StyleConfig, max_iterations: int,
                        on_iteration: IterationHook | None, report_every: int, where: str) -> ScaleOutcome:
    """The loop above for GPUs: nothing is read back to the host between report points.

    The best iterate, its loss and its terms are kept with device-side selects; the losses are
    read, checked for NaN and tested for early stopping only at report points (so a NaN is
    reported, and an early stop happens, up to ``report_every - 1`` iterations later than on the
    CPU path). Same algorithm and results as the CPU path (tested against it on the CPU).
    """
    began = time.perf_counter()
    x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    lbfgs = DeviceLBFGS(x.numel(), cfg.lbfgs_history, x.device, x.dtype)
    best_x = x.detach().clone()
    best_loss = torch.full((), math.inf, device=x.device)
    best_terms: dict[str, Tensor] = {}
    losses: list[Tensor] = []  # every evaluated loss, since the last report point
    best_history: list[float] = []
    unread: list[Tensor] = []  # best losses not yet read back
    loss_scale: Tensor | None = None
    iteration, stopped_early = 0, False
    for iteration in range(1, max_iterations + 1):
        x.grad = None
        total, terms = objective(x)
        if loss_scale is None:
            loss_scale = total.detach().abs().clamp_min(1e-12)
        (total / loss_scale).backward()
        loss = total.detach()
        better = loss < best_loss
        best_loss = torch.where(better, loss, best_loss)
        best_x.copy_(torch.where(better, x.detach(), best_x))
        best_terms = {k: torch.where(better, v, best_terms[k]) if best_terms else v for k, v in terms.items()}
        losses.append(loss)
        unread.append(best_loss)
        assert x.grad is not None
        with torch.no_grad():
            x.add_(lbfgs.direction(x.grad.reshape(-1)).view_as(x))
        report = iteration % report_every == 0 or iteration == max_iterations
        if report:
            _check_finite(torch.stack(losses).tolist(), iteration, where)
            losses.clear()
            best_history += torch.stack(unread).tolist()
            unread.clear()
            stopped_early = _converged(best_history, cfg)
        done = stopped_early or iteration == max_iterations
        if on_iteration is not None:
            reported = report and not done
            on_iteration(iteration, _to_floats(terms, float(loss)) if reported else None, False, False,
                         best_x if reported else None)
        if stopped_early:
            break
    final = _to_floats(best_terms, float(best_loss)) if best_terms else {}
    if on_iteration is not None and max_iterations > 0:
        on_iteration(iteration, final, True, stopped_early, best_x)
    image = best_x if max_iterations > 0 else start.detach()
    return ScaleOutcome(image, iteration, stopped_early, final, time.perf_counter() - began)


def _check_finite(losses: list[float], last_iteration: int, where: str) -> None:
    """``losses`` are those of the iterations up to ``last_iteration``; name the first bad one."""
    first = last_iteration - len(losses) + 1
    for offset, value in enumerate(losses):
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"the loss became {value} at {where}iteration {first + offset}: lower the content/style/tv weights "
                "or check the input images"
            )


def _make_optimizer(x: Tensor, cfg: StyleConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam([x], lr=cfg.adam_lr)
    # max_iter=1: one step() is one evaluation, so the loop above sees every iteration. The
    # tolerances are off because stopping is ours (relative loss improvement, scale-free).
    return torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=cfg.lbfgs_history, tolerance_grad=-1.0, tolerance_change=-1.0)


def _step(optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor], x: Tensor, cfg: StyleConfig) -> Tensor:
    if cfg.optimizer == "adam":
        loss = closure()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0, 1)  # Adam keeps the box constraint at every step; L-BFGS is clamped per scale
        return loss
    return optimizer.step(closure)  # type: ignore[return-value]


def _converged(best_history: list[float], cfg: StyleConfig) -> bool:
    window = cfg.early_stop_window
    if cfg.early_stop_rtol <= 0 or len(best_history) <= window:
        return False
    before, now = best_history[-1 - window], best_history[-1]
    return (before - now) <= cfg.early_stop_rtol * abs(now)


def _to_floats(terms: dict[str, Tensor], total: float) -> dict[str, float]:
    return {**{k: float(v) for k, v in terms.items()}, "total": total}
