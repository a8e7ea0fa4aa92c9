"""The CUDA path against the eager one and the guard's bound; run by scripts/gpu-check.sh, skipped
without a GPU (the conftest skips every test marked `cuda`)."""

import copy

import pytest
import torch

from nst_batch.core import StyleConfig, compute_style_targets, configure_backends, stylize
from nst_batch.core.lbfgs import DeviceLBFGS
from nst_batch.core.memory import estimate_memory
from nst_batch.core.optimize import optimize_scale
from nst_batch.core.stylizer import build_objective
from nst_batch.core.targets import blend_targets

pytestmark = pytest.mark.cuda
CFG = StyleConfig(size=128, scales=(1.0,), iterations=(30,), early_stop_rtol=0.0)


@pytest.fixture
def cuda_problem(features, content, style):
    device = torch.device("cuda")
    configure_backends(device, deterministic=True)  # the same kernels every time: graph and eager comparable
    feats = copy.deepcopy(features).to(device).use_channels_last(True)
    content = torch.nn.functional.interpolate(content, size=(96, 128), mode="bilinear").to(device)
    targets = compute_style_targets(style.to(device), feats, CFG)
    yield build_objective(feats, CFG, content, blend_targets([targets], (1.0,), CFG.style_sides()[0])), content, feats
    configure_backends(device)


def test_a_graph_replay_gives_the_eager_result(cuda_problem):
    objective, content, _ = cuda_problem
    eager = optimize_scale(content, objective, CFG, 30, graphs=False)
    graphed = optimize_scale(content, objective, CFG, 30, graphs=True)
    # The graph replayed: a capture that fell back to eager would pass the comparison below too.
    assert (graphed.graphed, graphed.capture_error) == (True, "") and eager.graphed is None
    assert graphed.iterations == eager.iterations == 30
    assert (graphed.image - eager.image).abs().max() < 1e-4
    assert graphed.losses["total"] == pytest.approx(eager.losses["total"], rel=1e-4)


def test_the_device_lbfgs_on_cuda_matches_the_cpu(cuda_problem):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 20, dtype=torch.float64, generator=gen)
    hessian, b = a @ a.T + 0.1 * torch.eye(20, dtype=torch.float64), torch.randn(20, dtype=torch.float64, generator=gen)
    xs = {}
    for device in ("cpu", "cuda"):
        h, bb = hessian.to(device), b.to(device)
        x = torch.zeros(20, dtype=torch.float64, device=device)
        lbfgs = DeviceLBFGS(20, 3, torch.device(device), torch.float64)
        for _ in range(10):
            x = x + lbfgs.direction(h @ x - bb)
        xs[device] = x.cpu()
    assert torch.allclose(xs["cpu"], xs["cuda"], rtol=1e-9, atol=1e-12)


def test_bf16_on_the_gpu_stays_close_to_fp32(cuda_problem):
    _, content, feats = cuda_problem
    targets = compute_style_targets(content.flip(-1), feats, CFG)
    grams = blend_targets([targets], (1.0,), CFG.style_sides()[0])
    point = (0.9 * content + 0.1 * content.flip(-1)).requires_grad_(True)
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = StyleConfig(size=128, scales=(1.0,), precision=precision)
        point.grad = None
        total, _ = build_objective(feats, cfg, content, grams)(point)
        total.backward()
        out[precision] = (float(total.detach()), point.grad.flatten().clone())
    assert out["bf16"][0] == pytest.approx(out["fp32"][0], rel=0.05)
    assert float(torch.nn.functional.cosine_similarity(out["bf16"][1], out["fp32"][1], dim=0)) > 0.95


def test_the_guards_estimate_covers_the_peak_reserved_memory(cuda_problem):
    _, content, feats = cuda_problem
    cfg = StyleConfig(size=1024, scales=(1.0,), iterations=(5,), early_stop_rtol=0.0)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_reserved()
    stylize(content, feats, cfg, styles=[content.flip(-1)])
    reserved = torch.cuda.max_memory_reserved() - base
    estimate = estimate_memory(cfg, 96, 128, "cuda")
    assert estimate.total - estimate.base >= reserved


def test_the_device_lbfgs_allocates_nothing_after_its_first_steps(cuda_problem):
    """What a CUDA graph needs: the same memory every step once the history is set up."""
    n = 3 * 96 * 128
    lbfgs = DeviceLBFGS(n, 5, torch.device("cuda"))
    grads = [torch.randn(n, device="cuda") for _ in range(3)]
    for i in range(8):
        lbfgs.direction(grads[i % 3] * (1 + 0.1 * i))
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for i in range(8):
        lbfgs.direction(grads[i % 3] * (2 + 0.1 * i))
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
