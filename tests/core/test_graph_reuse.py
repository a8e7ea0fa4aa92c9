"""A scale's CUDA graph kept for the next batch of its shape (nst_batch.core.optimize.GraphCache),
on the CPU with the fake graph of test_graphed_stepper: a tape of the aten ops the capture ran, on
the tensors it ran them on, so a replay sees only what was copied into those tensors, as on a GPU.
A batch that replays a kept graph must get what it gets with a graph of its own.

In float64 (see test_batch's docstring: a float32 run is chaotic); the two runs take the same
ops in the same order, so they agree to float64 rounding."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from nst_batch.core import StyleConfig, compute_style_targets, luminance_match_for, stylize
from nst_batch.core import optimize as opt
from nst_batch.core import stylizer as st
from nst_batch.core.lbfgs import DeviceLBFGS
from nst_batch.core.optimize import GraphCache, Reuse, optimize_batch
from nst_batch.core.regions import Region
from nst_batch.core.stylizer import stylize_batch
from tests.core.test_graphed_stepper import _FakeCuda
from tests.synthetic import blocks_like, painting_like, photo_like

# Two scales, the pyramid at the first (its start is a buffer too), the coarse levels' targets.
CFG = StyleConfig(size=48, scales=(0.5, 1.0), iterations=(8, 6), precision="fp32", early_stop_rtol=0.0)


@pytest.fixture
def graphed(monkeypatch):
    """The CUDA path on the CPU: device-resident L-BFGS and graphs by default, the fake graphs."""
    fake = _FakeCuda()
    monkeypatch.setattr(opt, "CUDA", fake)
    monkeypatch.setattr(opt, "_on_cuda", lambda device: True)
    return fake


@pytest.fixture(scope="module")
def features64(features):
    return copy.deepcopy(features).double()


def _batch(features, cfg, seeds, styles):
    photos = [photo_like(36, 48, seed=s).double() for s in seeds]
    targets = [
        [compute_style_targets(style.double(), features, cfg, luminance_match=luminance_match_for(p, cfg))]
        for p, style in zip(photos, styles, strict=True)
    ]
    return photos, targets


def _run(batch, features, cfg, graphs):
    photos, targets = batch
    return stylize_batch(photos, features, cfg, targets, graphs=graphs)


def _styles():
    return [painting_like(40, 48), blocks_like(48, 48, 0), blocks_like(48, 48, 1)]


def _distance(a, b) -> float:
    return max(float((x.image - y.image).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("style_loss", ["swd", "gram"])
def test_the_next_batch_of_a_shape_replays_the_kept_graphs_and_gets_its_own_result(features64, graphed, style_loss):
    cfg = replace(CFG, style_loss=style_loss)
    s = _styles()
    first = _batch(features64, cfg, (0, 1), (s[0], s[1]))
    second = _batch(features64, cfg, (2, 3), (s[2], s[0]))  # other photos, other paintings
    cache = GraphCache()
    made_first = _run(first, features64, cfg, graphs=cache)
    reused = _run(second, features64, cfg, graphs=cache)
    assert (graphed.captures, cache.captured, cache.reused) == (2, 2, 2)  # one capture per scale, not per batch
    assert all(scale.graphed for r in made_first + reused for scale in r.scales)
    assert [s.graph_kept for r in made_first for s in r.scales] == [False] * 4
    assert [s.graph_kept for r in reused for s in r.scales] == [True] * 4

    own = _run(second, features64, cfg, graphs=GraphCache())  # the second batch with graphs of its own
    assert graphed.captures == 4
    assert _distance(reused, own) < 1e-9
    for r, o in zip(reused, own, strict=True):
        assert r.final_losses["total"] == pytest.approx(o.final_losses["total"], rel=1e-9)
    assert _distance(reused, made_first) > 0.05  # and it is not the first batch's result


def test_a_buffer_left_out_of_the_reload_is_seen(features64, graphed, monkeypatch):
    """The comparison above can fail: with the content features left out of the buffers, the kept
    graph replays against the first batch's photos, and the second batch comes out wrong."""
    real = st._batch_objective

    def forgetful(*args, **kwargs):
        objective, buffers = real(*args, **kwargs)
        return objective, buffers[1:]  # the content features at relu4_2 come first

    monkeypatch.setattr(st, "_batch_objective", forgetful)
    s = _styles()
    cache = GraphCache()
    _run(_batch(features64, CFG, (0, 1), (s[0], s[1])), features64, CFG, graphs=cache)
    second = _batch(features64, CFG, (2, 3), (s[0], s[1]))
    reused = _run(second, features64, CFG, graphs=cache)
    own = _run(second, features64, CFG, graphs=GraphCache())
    assert cache.reused == 2 and _distance(reused, own) > 1e-3


def test_one_photo_at_a_time_reuses_too_and_a_new_shape_drops_the_kept_graphs(features64, graphed):
    s = _styles()
    cache = GraphCache()
    for seed in (0, 1):
        (photo,), (targets,) = _batch(features64, CFG, (seed,), (s[seed],))
        stylize(photo, features64, CFG, targets=targets, graphs=cache)
    assert (cache.captured, cache.reused) == (2, 2)
    wide = photo_like(44, 48, seed=5).double()  # another shape: its own graphs, the others dropped
    stylize(wide, features64, CFG, targets=_batch(features64, CFG, (5,), (s[2],))[1][0], graphs=cache)
    assert (cache.captured, cache.reused, len(cache._kept)) == (4, 2, 2)
    assert graphed.captures == 4


def test_runs_with_regions_keep_no_graph(features, graphed):
    """A masked style term keeps numbers worked out from its mask, which a replay would not see change."""
    photo = photo_like(36, 48, seed=0)
    targets = [
        compute_style_targets(painting_like(40, 48), features, CFG, luminance_match=luminance_match_for(photo, CFG))
    ]
    left = torch.zeros(36, 48)
    left[:, :24] = 1
    regions = [Region(left, 0), Region(1 - left, None)]
    cache = GraphCache()
    result = stylize(photo, features, CFG, targets=targets, regions=regions, graphs=cache)
    assert cache.captured == 0 and graphed.captures == 2 and all(scale.graphed for scale in result.scales)


def test_a_kept_stepper_starts_each_batch_afresh(graphed):
    """optimize_batch alone: a quadratic per image whose centre is the batch's own buffer."""
    centre = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    # Ill-conditioned, so that 6 iterations are far from the minimum and the path depends on the history.
    weights = torch.logspace(-2, 2, 192, dtype=torch.float64).reshape(3, 8, 8)

    def objective(x):
        loss = (weights * (x - centre) ** 2).flatten(1).sum(1)
        return loss, {"content": loss.detach()}

    cfg = replace(CFG, lbfgs_history=3)
    cache = GraphCache()
    gen = torch.Generator().manual_seed(0)
    runs = []
    for _ in range(2):
        centre.copy_(torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64))
        start = torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)
        own_centre = centre.clone()
        reuse = Reuse(cache, "shape", 0, [own_centre])
        kept = optimize_batch(start, lambda x, c=own_centre: objective(x - c + centre), cfg, 6, reuse=reuse)
        eager = optimize_batch(start, objective, cfg, 6, graphs=False)
        runs.append((kept, eager))
    assert cache.reused == 1 and graphed.captures == 1
    for kept, eager in runs:
        for k, e in zip(kept, eager, strict=True):
            assert torch.allclose(k.image, e.image, rtol=0, atol=1e-12) and k.graphed


def test_reset_lbfgs_is_a_new_one():
    gen = torch.Generator().manual_seed(1)
    used = DeviceLBFGS(50, 4, torch.device("cpu"), torch.float64)
    for _ in range(7):
        used.direction(torch.randn(50, generator=gen, dtype=torch.float64))
    used.reset()
    new = DeviceLBFGS(50, 4, torch.device("cpu"), torch.float64)
    for _ in range(6):
        grad = torch.randn(50, generator=gen, dtype=torch.float64)
        assert torch.equal(used.direction(grad), new.direction(grad))
