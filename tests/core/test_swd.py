"""The sliced-Wasserstein style loss (style_loss: swd): its invariants on tiny tensors, its targets,
and a run with it on the real VGG-19."""

from dataclasses import replace

import pytest
import torch

from nst_batch.core import (
    StepInfo,
    StyleConfig,
    TargetsMismatchError,
    compute_style_targets,
    stylize,
    targets_from_bytes,
    targets_to_bytes,
)
from nst_batch.core import losses as L
from nst_batch.core.losses import quantile_table, sliced_wasserstein_loss, style_projections, swd_directions
from nst_batch.core.quality import Evaluator
from nst_batch.core.stylizer import scale_objective
from tests.synthetic import blocks_like, painting_like

TINY = StyleConfig(size=32, scales=(1.0,), iterations=(5,), early_stop_rtol=0.0, style_loss="swd")


def features_like(channels: int, height: int, width: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """ReLU features: non-negative, many exact zeros, correlated channels, like VGG's."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(channels, channels, generator=g)
    raw = torch.einsum("dc,bchw->bdhw", mixing, torch.randn(1, channels, height, width, generator=g))
    return torch.relu(raw) * scale


def table_of(features: torch.Tensor, layer: str = "relu1_1", seed: int = 0) -> torch.Tensor:
    return quantile_table(style_projections(features, swd_directions(features.shape[1], seed, layer)))


def swd(features: torch.Tensor, table: torch.Tensor, layer: str = "relu1_1", seed: int = 0) -> float:
    return float(sliced_wasserstein_loss(features, swd_directions(features.shape[1], seed, layer), table))


def test_directions_are_an_orthonormal_basis_fixed_by_seed_and_layer():
    d = swd_directions(16, 3, "relu2_1")
    assert d.shape == (16, 16) and d.dtype == torch.float32
    assert torch.allclose(d.T @ d, torch.eye(16), atol=1e-5)
    assert torch.equal(
        d, swd_directions(16, 3, "relu2_1")
    )  # the same directions at every call: every scale, every evaluation
    assert not torch.allclose(d, swd_directions(16, 4, "relu2_1"))
    assert not torch.allclose(d, swd_directions(16, 3, "relu3_1"))


def test_zero_for_identical_distributions_and_large_for_others():
    f = features_like(16, 40, 60, seed=1)
    same = swd(f, table_of(f))
    other = swd(features_like(16, 40, 60, seed=2, scale=2.0), table_of(f))
    assert other > 0
    assert same < 1e-3 * other, (same, other)


def test_the_pixel_counts_of_output_and_style_may_differ():
    """Quantiles, not sorted values: a 2x nearest upsampling repeats each value 4 times (the same
    distribution at 4x the pixels), and a second sample of the same distribution at another size
    is close too; a shifted distribution is not."""
    f = features_like(16, 30, 40, seed=1)
    table = table_of(f)
    upsampled = torch.nn.functional.interpolate(f, scale_factor=2, mode="nearest")
    same_law = features_like(16, 64, 90, seed=1)
    shifted = f + 0.5
    far = swd(shifted, table)
    assert swd(upsampled, table) < 1e-3 * far
    # Against the upsampled image's steps, 1200 positions' ranks read from ~4-value bins land up to a
    # neighbour off: within 1 % still, against 0.2 % measured.
    assert swd(f, table_of(upsampled)) < 1e-2 * far
    assert swd(same_law, table) < 0.1 * far


def test_histogram_ranks_match_a_sort():
    """Above SWD_EXACT_BELOW positions ranks come from a histogram: the matched values agree with
    those of exact ranks (from a sort) to a small fraction of the values' spread."""
    f = features_like(8, 64, 64, seed=5)
    d = swd_directions(8, 0, "relu1_1")
    p = d.T @ f.reshape(8, -1)
    table = table_of(features_like(8, 50, 50, seed=6, scale=1.5))
    histogram = L._matched(p, table)
    ranks = torch.empty_like(p).scatter_(
        1, p.argsort(dim=1), ((torch.arange(p.shape[1]) + 0.5) / p.shape[1]).expand_as(p)
    )
    exact = L._values_at(table, ranks)
    spread = float(table.std())
    error = (histogram - exact).abs()
    # Where a bin holds few values (the tails, where quantiles are steep) a value may be matched a
    # neighbour's quantile: the largest errors are there (0.22 of the spread measured), the bulk is exact.
    assert float(error.square().mean().sqrt()) < 0.005 * spread
    assert float(error.quantile(0.99)) < 0.02 * spread


def test_gradient_is_the_sliced_wasserstein_one():
    """With exact ranks (few positions) the loss is smooth between rank swaps, so float64
    finite differences check the hand-written backward."""
    f = features_like(6, 8, 10, seed=3).double().requires_grad_()
    d = swd_directions(6, 0, "relu1_1").double()
    table = table_of(features_like(6, 12, 12, seed=4, scale=1.3).double()).double()
    assert torch.autograd.gradcheck(
        lambda x: sliced_wasserstein_loss(x + 1e-3 * torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape), d, table),
        (f,),
        eps=1e-7,
        atol=1e-5,
    )


def test_shapes_are_checked():
    from nst_batch.core import ShapeError

    f = features_like(8, 4, 4, seed=0)
    with pytest.raises(ShapeError, match="channels"):
        sliced_wasserstein_loss(f, swd_directions(4, 0, "relu1_1"), torch.zeros(4, 16))


def test_targets_hold_quantiles_and_round_trip(features, style):
    cfg = replace(TINY, size=64, scales=(0.5, 1.0))
    targets = compute_style_targets(style, features, cfg)
    assert targets.spec.loss == "swd" and targets.spec.seed == 0
    assert {k: tuple(v.shape) for k, v in targets.tables[64].items()} == {
        "relu1_1": (64, L.SWD_QUANTILES),
        "relu2_1": (128, L.SWD_QUANTILES),
        "relu3_1": (256, L.SWD_QUANTILES),
        "relu4_1": (512, L.SWD_QUANTILES),
        "relu5_1": (512, L.SWD_QUANTILES),
    }
    # Bounded: the same size per side whatever the image's (1472 directions x 1024 quantiles x 4 bytes).
    assert targets.nbytes == 2 * 1472 * L.SWD_QUANTILES * 4
    restored = targets_from_bytes(targets_to_bytes(targets))
    assert restored.spec == targets.spec
    assert all(
        torch.equal(restored.tables[s][k], targets.tables[s][k]) for s in targets.sides for k in targets.spec.layers
    )
    # Gram targets, or swd targets of another seed (other directions), are refused.
    with pytest.raises(TargetsMismatchError, match="loss"):
        stylize(style, features, replace(cfg, style_loss="gram"), targets=[targets])
    with pytest.raises(TargetsMismatchError, match="seed"):
        stylize(style, features, replace(cfg, seed=1), targets=[targets])
    assert (
        compute_style_targets(style, features, replace(cfg, style_loss="gram")).spec.seed == 0
    )  # Gram has no directions


def test_precomputed_targets_give_the_same_image(features, content, style):
    cfg = replace(TINY, size=64, scales=(0.5, 1.0))
    direct = stylize(content, features, cfg, styles=[style]).image
    cached = stylize(
        content,
        features,
        cfg,
        targets=[targets_from_bytes(targets_to_bytes(compute_style_targets(style, features, cfg)))],
    ).image
    assert torch.equal(direct, cached)
    assert torch.equal(direct, stylize(content, features, cfg, styles=[style]).image)  # deterministic on a CPU


def test_the_objective_is_fixed_within_a_scale(features, content, style):
    """L-BFGS's curvature pairs assume one objective: the same point evaluates to the same loss and
    gradient every time (the directions are not redrawn per evaluation)."""
    cfg = replace(TINY, precision="fp32")
    targets = [compute_style_targets(style, features, cfg)]
    start, objective = scale_objective(content, features, cfg, targets)
    x = start.clone().requires_grad_(True)
    grads, totals = [], []
    for _ in range(2):
        total, _ = objective(x)
        (grad,) = torch.autograd.grad(total, x)
        totals.append(float(total.detach()))
        grads.append(grad)
    assert totals[0] == totals[1] and torch.equal(grads[0], grads[1])


def test_lbfgs_lowers_the_swd_style_loss(features, content, style):
    events: list[StepInfo] = []
    stylize(content, features, replace(TINY, iterations=(15,)), styles=[style], on_step=events.append, report_every=1)
    assert events[-1].losses["style"] < 0.5 * events[0].losses["style"]
    assert events[-1].losses["total"] < events[0].losses["total"]


def test_tiled_targets_are_close_to_the_whole_images(features):
    painting = painting_like(256, 256)
    whole = compute_style_targets(painting, features, replace(TINY, size=256))
    tiled = compute_style_targets(painting, features, replace(TINY, size=256, tile_size=128, tile_overlap=16))
    for layer in ("relu1_1", "relu2_1", "relu3_1"):  # the deep layers' halo reaches less of the image
        a, b = whole.tables[256][layer], tiled.tables[256][layer]
        assert float((a - b).norm() / a.norm()) < 0.05, layer


@pytest.mark.slow
def test_swd_moves_the_distribution_toward_the_painting(features):
    """The quality check in the judge's own terms: a swd run lowers the style distance and the
    distribution distance (the judge's independent directions)."""
    content, style = blocks_like(64, 64), painting_like(64, 64)
    cfg = StyleConfig(size=64, scales=(1.0,), iterations=(60,), early_stop_rtol=0.0, precondition=0, style_loss="swd")
    result = stylize(content, features, cfg, styles=[style]).image
    evaluator = Evaluator(features, content, style)
    photo, out = evaluator.baseline((64, 64)), evaluator(result)
    assert out.distribution < 0.6 * photo.distribution, (out, photo)
    assert out.style < photo.style, (out, photo)
