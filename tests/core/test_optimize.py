"""The loop's stop rules on small synthetic objectives (no network): the image-change stop fires
once the image stops moving, never while it moves, and measures 8-bit levels per iteration."""

from dataclasses import replace

import pytest
import torch

from nst_core import StyleConfig
from nst_core.optimize import VIEW_STRIDE, _Book, optimize_scale

CFG = StyleConfig(size=16, scales=(1.0,), early_stop_rtol=0.0, early_stop_change=0.05, early_stop_change_window=20)


def _pull_towards(target: torch.Tensor, weight: float = 1.0):
    def objective(x: torch.Tensor):
        loss = weight * ((x - target) ** 2).sum()
        return loss, {"content": loss.detach()}
    return objective


@pytest.fixture
def start_and_target():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 16, 16, generator=gen), torch.rand(1, 3, 16, 16, generator=gen)


def test_the_image_change_stop_ends_a_scale_once_the_image_stops_moving(start_and_target):
    start, target = start_and_target
    out = optimize_scale(start, _pull_towards(target), CFG, 200)
    # L-BFGS solves the quadratic in a few steps; the rule needs a full window to compare.
    assert out.stopped_early and CFG.early_stop_change_window < out.iterations <= CFG.early_stop_change_window + VIEW_STRIDE + 1
    assert torch.allclose(out.image, target, atol=1e-3)


def test_the_image_change_stop_is_off_at_zero_and_waits_while_the_image_moves(start_and_target):
    start, target = start_and_target
    off = optimize_scale(start, _pull_towards(target), replace(CFG, early_stop_change=0.0), 60)
    assert not off.stopped_early and off.iterations == 60
    # Adam at lr 0.002 moves every pixel by ~0.5 levels per iteration, 10x the threshold.
    moving = replace(CFG, optimizer="adam", adam_lr=0.002)
    out = optimize_scale(torch.zeros_like(target), _pull_towards(torch.ones_like(target)), moving, 60)
    assert not out.stopped_early and out.iterations == 60


def test_the_device_loop_looks_at_the_image_only_at_report_points(start_and_target):
    start, target = start_and_target
    out = optimize_scale(start, _pull_towards(target), CFG, 200, device_resident=True, graphs=False, report_every=5)
    assert out.stopped_early and out.iterations % 5 == 0 and out.iterations <= 40


def test_change_is_measured_in_8_bit_levels_per_iteration_at_viewing_size():
    x = torch.zeros(1, 3, 32, 48)
    for factor in (1.0, 0.5):
        book = _Book(x, check_every=1, view_factor=factor)
        book.view(0)
        assert book.change_per_iteration(10) is None  # nothing to compare with yet
        book.best_x += 20 / 255  # 20 levels in 10 iterations
        book.view(5)  # too soon after the last snapshot: not kept
        book.view(10)
        assert book.views[-1][1].shape[-1] == 48 * factor
        assert book.change_per_iteration(10) == pytest.approx(2.0, rel=1e-5)
        assert book.change_per_iteration(20) is None


def test_the_stop_settings_are_range_checked():
    from nst_core import ConfigError

    with pytest.raises(ConfigError, match="early_stop_change must be"):
        StyleConfig(early_stop_change=-1)
    with pytest.raises(ConfigError, match="early_stop_change_window must be"):
        StyleConfig(early_stop_change_window=500)
