"""The memory estimate: its shape, and that the largest size it offers is the largest that fits."""

from dataclasses import replace

import pytest

from nst_batch.core import StyleConfig
from nst_batch.core.memory import bytes_per_pixel, estimate_memory, largest_size

CFG = StyleConfig(coarse_style_share=0.0)  # one network pass per iteration: the shapes below are exact


def test_estimate_grows_with_the_pixels_and_the_history():
    small, large = estimate_memory(CFG, 768, 1024), estimate_memory(replace(CFG, size=2048), 768, 1024)
    assert (large.total - large.base) == pytest.approx(16 * (small.total - small.base), rel=0.01)  # 4x the side
    short = estimate_memory(replace(CFG, lbfgs_history=5), 768, 1024)
    assert short.optimizer < small.optimizer and short.activations == small.activations


def test_the_coarser_levels_add_their_pixels():
    """With coarse_style_share, the last scale also runs the network on the image downscaled to
    each coarser scale: 2048 px from 256 px adds 1/4 + 1/16 + 1/64 of its activations."""
    plain = estimate_memory(replace(CFG, size=2048), 768, 1024)
    shared = estimate_memory(replace(CFG, size=2048, coarse_style_share=0.5), 768, 1024)
    assert shared.activations == pytest.approx(plain.activations * (1 + 1 / 4 + 1 / 16 + 1 / 64), rel=1e-6)
    assert shared.optimizer == plain.optimizer
    single = replace(CFG, size=256, coarse_style_share=0.5)  # one scale: nothing coarser
    assert estimate_memory(single, 768, 1024) == estimate_memory(replace(single, coarse_style_share=0.0), 768, 1024)


def test_shallower_layers_need_less():
    shallow = replace(CFG, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    assert bytes_per_pixel(shallow)[0] < bytes_per_pixel(CFG)[0]


@pytest.mark.parametrize("budget_gib, device, tile", [(2, "cpu", 0), (8, "cpu", 0), (24, "cuda", 0), (8, "cpu", 1024)])
def test_largest_size_is_the_largest_that_fits(budget_gib, device, tile):
    budget = budget_gib * 2**30
    cfg = replace(CFG, tile_size=tile)
    side = largest_size(cfg, budget, 4 / 3, device)
    height = round(side * 3 / 4)
    assert estimate_memory(replace(cfg, size=side), height, side, device).total <= budget * 1.001
    assert estimate_memory(replace(cfg, size=side + 16), height, side, device).total > budget


def test_tiles_bound_the_network_and_optimiser_memory():
    whole = estimate_memory(replace(CFG, size=4096), 768, 1024)
    tiled = estimate_memory(replace(CFG, size=4096, tile_size=1024), 768, 1024)
    assert tiled.activations == estimate_memory(replace(CFG, size=1024), 1024, 1024).activations
    assert tiled.total < whole.total / 3
    # Below the tile size nothing changes.
    assert estimate_memory(replace(CFG, tile_size=1024), 768, 1024) == estimate_memory(CFG, 768, 1024)


def test_the_style_targets_count_when_the_style_is_large():
    """Style targets are computed on the style image at size x style_scale: at 8x it dominates."""
    plain, large = estimate_memory(CFG, 768, 1024), estimate_memory(replace(CFG, style_scale=8.0), 768, 1024)
    assert (
        plain.style < plain.activations + plain.transient + plain.optimizer
    )  # the defaults: the optimisation is the peak
    assert large.total == large.style + large.base and large.total > 3 * plain.total
    tiled = estimate_memory(replace(CFG, style_scale=8.0, tile_size=512), 768, 1024)
    assert tiled.style < large.style / 10  # tiled style targets: memory follows the tile
    assert estimate_memory(CFG, 768, 1024, style_pixels=100).style < plain.style  # a known, small style
