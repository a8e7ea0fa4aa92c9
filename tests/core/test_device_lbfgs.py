"""The GPU loop (device-resident L-BFGS, no reads between report points), run on the CPU against
the CPU loop (torch.optim.LBFGS): the same algorithm must give the same iterates."""

import copy
from dataclasses import replace

import pytest
import torch

from nst_batch.core import NonFiniteLossError, StyleConfig, compute_style_targets
from nst_batch.core.lbfgs import DeviceLBFGS
from nst_batch.core.optimize import IterationEvent, optimize_scale
from nst_batch.core.stylizer import build_objective
from nst_batch.core.targets import blend_targets

CFG = StyleConfig(size=32, scales=(1.0,), iterations=(12,), early_stop_rtol=0.0, lbfgs_history=4)


def _quadratic(n: int = 20, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, dtype=torch.float64, generator=gen)
    hessian = a @ a.T + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, dtype=torch.float64, generator=gen)
    return hessian, b


def test_steps_match_torch_lbfgs_on_a_quadratic_past_a_full_history():
    hessian, b = _quadratic()
    x_ref = torch.zeros(20, dtype=torch.float64, requires_grad=True)
    torch_opt = torch.optim.LBFGS(
        [x_ref], lr=1.0, max_iter=1, history_size=3, tolerance_grad=-1.0, tolerance_change=-1.0
    )

    def closure():
        torch_opt.zero_grad()
        loss = 0.5 * x_ref @ hessian @ x_ref - b @ x_ref
        loss.backward()
        return loss

    x = torch.zeros(20, dtype=torch.float64)
    ours = DeviceLBFGS(20, 3, torch.device("cpu"), torch.float64)
    for _ in range(10):  # three times round the ring of 3
        torch_opt.step(closure)
        x = x + ours.direction(hessian @ x - b)
        assert torch.allclose(x, x_ref.detach(), rtol=1e-9, atol=1e-12)


def test_a_rejected_curvature_pair_keeps_the_older_pairs():
    ours = DeviceLBFGS(3, 2, torch.device("cpu"), torch.float64)
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    ours.direction(g)
    ours.direction(g * 0.5)  # y.s > 0: kept
    kept = ours.valid.clone()
    ours.direction(g * 0.5)  # y = 0: rejected
    assert torch.equal(ours.valid, kept) and int(ours.head) == 1


def _problem(features, content, style, dtype=torch.float32):
    features = copy.deepcopy(features).to(dtype)
    content = torch.nn.functional.interpolate(content, size=(24, 32), mode="bilinear", align_corners=False).to(dtype)
    targets = compute_style_targets(style.to(dtype), features, CFG)
    return build_objective(features, CFG, content, blend_targets([targets], (1.0,), CFG.style_sides()[0])), content


@pytest.fixture
def problem(features, content, style):
    return _problem(features, content, style)


def test_the_device_loop_gives_the_cpu_loops_result(features, content, style):
    """In float64, so that the tolerance follows from the arithmetic: two summation orders (the
    compact form's matrix products against torch's dot products, or another core count) differ
    by ~1e-16 relative per operation, and 12 iterations of a non-convex problem amplify that by
    far less than the 1e-9 allowed; in float32 the same amplification of ~1e-7 is not negligible."""
    objective, start = _problem(features, content, style, torch.float64)
    a = optimize_scale(start, objective, CFG, 12, device_resident=False)
    events: list[IterationEvent] = []
    b = optimize_scale(start, objective, CFG, 12, device_resident=True, report_every=5, on_iteration=events.append)
    assert a.iterations == b.iterations == 12
    assert torch.allclose(a.image, b.image, rtol=0, atol=1e-9)
    assert b.losses["total"] == pytest.approx(a.losses["total"], rel=1e-9)
    assert [e.losses is not None for e in events[:-1]] == [i % 5 == 0 for i in range(1, 12)] + [False]
    assert events[-1].scale_done and events[-1].image is not None


def test_the_device_loop_in_float32_stays_close(problem):
    objective, content = problem
    a = optimize_scale(content, objective, CFG, 12, device_resident=False)
    b = optimize_scale(content, objective, CFG, 12, device_resident=True)
    # float32 and two summation orders: the images agree to a few 1e-3 of the [0, 1] range.
    assert (a.image - b.image).abs().max() < 5e-3
    assert b.losses["total"] == pytest.approx(a.losses["total"], rel=1e-2)


def test_the_device_loop_stops_early_at_a_report_point(problem):
    objective, content = problem
    cfg = replace(CFG, early_stop_rtol=0.5, early_stop_window=2)
    out = optimize_scale(content, objective, cfg, 40, device_resident=True, report_every=4)
    assert out.stopped_early and out.iterations % 4 == 0 and out.iterations < 40


def test_the_device_loop_reports_a_nan_loss(problem):
    objective, content = problem

    def poisoned(x):
        total, terms = objective(x)
        return total * float("nan"), terms

    with pytest.raises(NonFiniteLossError, match="loss became nan at iteration 1"):
        optimize_scale(content, poisoned, CFG, 6, device_resident=True, report_every=3)
