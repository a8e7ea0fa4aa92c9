"""The CUDA path's logic, on the CPU: the captured iteration reads nothing back to the host, the
graphed stepper's bookkeeping (warm-up, capture, replay, a failed or empty capture, graphs off
for the process) against a fake graph, and float32 L-BFGS against float64 over a long run."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from nst_batch.core import StyleConfig
from nst_batch.core import optimize as opt
from nst_batch.core.lbfgs import DeviceLBFGS
from nst_batch.core.optimize import optimize_scale
from tests.core.test_device_lbfgs import _problem

CFG = StyleConfig(size=32, scales=(1.0,), iterations=(12,), early_stop_rtol=0.0, lbfgs_history=4)
# Ops that copy a device value to the host: on a GPU each one waits for every kernel queued before it.
_HOST_READS = {
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "equal",
    "tolist",
    "allclose",
    "nonzero",
    "masked_select",
    "unique",
}


class _NoHostReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _HOST_READS:
            self.seen.append(name)
            raise AssertionError(f"{name} reads a value back to the host inside the captured iteration")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_captured_iteration_reads_nothing_back(features, content, style, dtype):
    """What a CUDA graph captures (evaluation, backward, L-BFGS direction, step) after the warm-up,
    run under a dispatch mode that fails on any op that would sync with the host."""
    cfg = replace(CFG, precision="bf16" if dtype == torch.bfloat16 else "fp32")
    objective, start = _problem(features, content, style)
    stepper = opt._DeviceStepper(start, objective, cfg)
    for _ in range(opt._GraphedStepper.WARMUP):  # eager, as on the GPU: the first-step branch is taken here
        stepper.step()
    stepper.x.grad = None
    with _NoHostReads() as mode, torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        loss, terms = stepper._iterate()
    assert mode.seen == [] and torch.isfinite(loss) and set(terms)


def test_the_dispatch_mode_catches_a_host_read():
    """The guard itself: an .item() inside the step is caught (a test that cannot fail proves nothing)."""
    x = torch.ones(3)
    with pytest.raises(AssertionError, match="_local_scalar_dense reads a value back"), _NoHostReads():
        (x * 2).sum().item()


class _Tape(TorchDispatchMode):
    """Records every aten op run under it: the op, the tensors and numbers it was given, what it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


# In-place ops on a tensor's shape, not its values (matmul squeezes its result this way).
_METADATA_OPS = {"squeeze_", "unsqueeze_", "transpose_", "t_", "as_strided_", "swapdims_", "swapaxes_", "detach_"}


class _FakeGraph:
    """A CUDA graph on the CPU, with the semantics that matter: capture records every aten op of
    the function, with the very tensors it read and wrote and the numbers it was given; a replay
    runs those ops again on those tensors (each result written into the tensor the capture made),
    and Python does not run. So, as on a GPU, a tensor the code rebinds after the capture, or a
    number it works out anew, is not seen by a replay: only what is copied into the captured
    tensors is. A real capture launches nothing and the replay after it does the work; here the
    capture ran the function, so the first replay is that run."""

    def __init__(self, ops: list[tuple]) -> None:
        self.ops = ops
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        if self.replays == 1:
            return
        with torch.no_grad():  # the recorded ops are autograd's own, backward included
            self._run()

    def _run(self) -> None:
        for func, args, kwargs, out in self.ops:
            if func.overloadpacket.__name__ in _METADATA_OPS:
                continue  # it changed the tensor object itself, which the replay keeps
            fresh = func(*args, **kwargs)
            given = {t.untyped_storage().data_ptr() for t in pytree.tree_leaves((args, kwargs)) if torch.is_tensor(t)}
            for kept, new in zip(pytree.tree_leaves(out), pytree.tree_leaves(fresh), strict=True):
                # A view or an in-place op's result is memory the op was given: running it again did it.
                if torch.is_tensor(kept) and kept.untyped_storage().data_ptr() not in given:
                    kept.copy_(new.view(kept.shape))  # its shape as a later metadata op left it


class _FakeCuda(opt.CudaGraphs):
    """CudaGraphs with streams as no-ops and graphs as :class:`_FakeGraph`; ``fail``/``empty`` make
    a capture raise or come out empty."""

    def __init__(self, fail: str = "", empty: bool = False) -> None:
        super().__init__()
        self.fail, self.empty, self.captures = fail, empty, 0

    def side_stream(self, device):
        return None

    @contextlib.contextmanager
    def on_side_stream(self, side, device):
        yield

    def capture(self, fn, device):
        self.captures += 1
        if self.fail:
            raise RuntimeError(self.fail)
        if self.empty:
            raise RuntimeError("the captured graph is empty (The CUDA Graph is empty.)")
        with _Tape() as tape:
            outputs = fn()  # capture runs the function once, recording; replay below runs it
        return _FakeGraph(tape.ops), outputs


@pytest.fixture
def problem64(features, content, style):
    return _problem(features, content, style, torch.float64)


def _graphed(start, objective, cfg, iterations):
    return optimize_scale(start, objective, cfg, iterations, device_resident=True, graphs=True)


def test_the_graphed_stepper_gives_the_eager_device_result_and_says_it_replayed(problem64, monkeypatch):
    objective, start = problem64
    fake = _FakeCuda()
    monkeypatch.setattr(opt, "CUDA", fake)
    graphed = _graphed(start, objective, CFG, 12)
    eager = optimize_scale(start, objective, CFG, 12, device_resident=True, graphs=False)
    assert (graphed.graphed, graphed.capture_error) == (True, "")
    assert eager.graphed is None
    assert fake.captures == 1  # once per scale, after the warm-up
    assert torch.allclose(graphed.image, eager.image, rtol=0, atol=1e-12)
    assert graphed.losses["total"] == pytest.approx(eager.losses["total"], rel=1e-12)


@pytest.mark.parametrize(
    "fake",
    [_FakeCuda(fail="operation not permitted when stream is capturing"), _FakeCuda(empty=True)],
    ids=["capture-fails", "empty-graph"],
)
def test_a_failed_capture_is_seen_warned_once_and_turns_graphs_off(problem64, monkeypatch, fake):
    objective, start = problem64
    monkeypatch.setattr(opt, "CUDA", fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = _graphed(start, objective, CFG, 12)
        second = _graphed(start, objective, CFG, 12)
    eager = optimize_scale(start, objective, CFG, 12, device_resident=True, graphs=False)
    assert first.graphed is False and (fake.fail or "empty") in first.capture_error
    assert second.graphed is False and "graphs are off in this process" in second.capture_error
    assert fake.captures == 1  # no second attempt after a failure
    assert len([w for w in caught if "CUDA graph capture failed" in str(w.message)]) == 1
    # The scale went on eagerly with the same result.
    assert torch.allclose(first.image, eager.image, rtol=0, atol=1e-12)


def test_float32_lbfgs_follows_float64_over_a_long_run_with_the_default_history(features, content, style):
    """The compact L-BFGS in float32 (its m x m algebra in float64) against float64, 160
    iterations of the real VGG problem with the default history of 50: the small system stays
    regular (no blow-up from a near-zero diagonal) and the two runs reach the same loss."""
    cfg = replace(StyleConfig(), size=32, scales=(1.0,), iterations=(160,), early_stop_rtol=0.0)
    assert cfg.lbfgs_history == 50
    objective32, start32 = _problem(features, content, style, torch.float32)
    objective64, start64 = _problem(features, content, style, torch.float64)
    run32 = optimize_scale(start32, objective32, cfg, 160, device_resident=True)
    run64 = optimize_scale(start64, objective64, cfg, 160, device_resident=True)
    assert run32.iterations == run64.iterations == 160
    assert torch.isfinite(run32.image).all()
    first = objective64(start64)[0].item()
    assert run64.losses["total"] < 0.2 * first
    # Non-convex and 160 steps long: the iterates drift apart, the loss they reach does not.
    assert run32.losses["total"] == pytest.approx(run64.losses["total"], rel=0.05)


def test_device_lbfgs_in_float32_keeps_its_small_system_finite():
    lbfgs = DeviceLBFGS(1000, 50, torch.device("cpu"), torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=gen)
    scales = torch.logspace(-3, 3, 1000)
    for _ in range(200):  # an ill-conditioned quadratic: tiny s.y late in the run
        x = x + lbfgs.direction(scales * x)
        assert torch.isfinite(x).all()
    assert float((scales * x * x).sum()) < 1e-3 * float((scales * torch.randn(1000, generator=gen) ** 2).sum())
