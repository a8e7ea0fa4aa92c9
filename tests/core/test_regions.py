"""Styles by region: masks checked, a kept region stays the photo, two regions take two styles."""

from dataclasses import replace

import pytest
import torch

from nst_batch.core import ConfigError, ShapeError, StyleConfig, compute_style_targets, stylize
from nst_batch.core.losses import gram_matrix
from nst_batch.core.regions import Region, check_regions
from tests.synthetic import blocks_like, painting_like

TINY = StyleConfig(size=64, scales=(1.0,), iterations=(30,), early_stop_rtol=0.0, precondition=0)


def halves(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    left = torch.zeros(height, width)
    left[:, : width // 2] = 1
    return left, 1 - left


def masked_style_distance(features, image, style, mask):
    """Relative Gram distance of the masked features to the whole style's, over relu1_1..relu3_1."""
    layers = ("relu1_1", "relu2_1", "relu3_1")
    fi, fs = features(image, layers), features(style, layers)
    out = []
    for k in layers:
        m = torch.nn.functional.interpolate(mask[None, None], size=fi[k].shape[-2:], mode="area")
        g = gram_matrix(fi[k] * m / m.square().mean().sqrt())
        a = gram_matrix(fs[k])
        out.append(float(torch.linalg.norm(g - a) / torch.linalg.norm(a)))
    return sum(out) / len(out)


def test_masks_are_checked():
    left, right = halves(48, 64)
    cfg = StyleConfig(size=64)
    check_regions([Region(left, 0), Region(right, None)], 1, (48, 64), cfg)
    with pytest.raises(ConfigError, match="aspect"):
        check_regions([Region(left, 0), Region(right, None)], 1, (64, 64), cfg)
    with pytest.raises(ShapeError, match="sum to 1"):
        check_regions([Region(left, 0), Region(left, None)], 1, (48, 64), cfg)
    with pytest.raises(ShapeError, match="style #2 of 1"):
        check_regions([Region(left, 1), Region(right, None)], 1, (48, 64), cfg)
    with pytest.raises(ConfigError, match="every region keeps"):
        check_regions([Region(left, None), Region(right, None)], 1, (48, 64), cfg)
    with pytest.raises(ConfigError, match="tile_size"):
        check_regions([Region(left, 0), Region(right, None)], 1, (480, 640), replace(cfg, size=1024, tile_size=256))
    with pytest.raises(ConfigError, match="style_blend"):
        check_regions([Region(left, 0), Region(right, 1)], 2, (48, 64), replace(cfg, style_blend=(1.0, 2.0)))


def test_a_region_too_small_for_its_style_is_refused_in_one_line():
    dot = torch.zeros(384, 512)
    dot[:10, :10] = 1
    with pytest.raises(
        ConfigError, match=r"sky covers 0\.1% of the photo, too small to carry a style \(at least"
    ) as info:
        check_regions([Region(dot, 0, "sky"), Region(1 - dot, None, "rest")], 1, (384, 512), StyleConfig(size=512))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("loss", ["gram", "swd"])
def test_a_kept_region_stays_the_photo_and_the_other_takes_the_style(features, loss):
    photo, painting = blocks_like(48, 64), painting_like(48, 64)
    left, right = halves(48, 64)
    cfg = replace(TINY, style_loss=loss)
    out = stylize(
        photo, features, cfg, styles=[painting], regions=[Region(left, None, "keep"), Region(right, 0, "paint")]
    ).image
    # Kept: the photo exactly, but for the feathered edge (2 px) next to the styled half.
    assert float((out[..., :, : 32 - 3] - photo[..., :, : 32 - 3]).abs().max()) < 1e-6
    changed = float((out[..., :, 32 + 3 :] - photo[..., :, 32 + 3 :]).abs().mean())
    assert changed > 0.05, changed
    # The seam is soft: the change spreads over the feathered columns, none of which jumps much
    # more than the styled half's own columns do (0.20 against 0.19 measured with swd).
    steps = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(0, 1, 2))
    seam = steps[29:35]
    assert float(seam.max()) <= 1.25 * float(steps[35:].max())
    assert int((seam > 0.05).sum()) >= 3


def test_two_regions_take_two_styles_measurably(features):
    """Each half ends nearer its own painting than the other half does."""
    photo = blocks_like(64, 64)
    stripes, dots = painting_like(64, 64), blocks_like(64, 64, seed=7)
    left, right = halves(64, 64)
    out = stylize(
        photo,
        features,
        replace(TINY, iterations=(60,)),
        styles=[stripes, dots],
        regions=[Region(left, 0, "stripes"), Region(right, 1, "dots")],
    ).image
    left_to_stripes = masked_style_distance(features, out, stripes, left)
    right_to_stripes = masked_style_distance(features, out, stripes, right)
    left_to_dots = masked_style_distance(features, out, dots, left)
    right_to_dots = masked_style_distance(features, out, dots, right)
    assert left_to_stripes < right_to_stripes and right_to_dots < left_to_dots, (
        left_to_stripes,
        right_to_stripes,
        left_to_dots,
        right_to_dots,
    )


def test_regions_with_cached_targets_give_the_same_image(features):
    photo, painting = blocks_like(48, 64), painting_like(48, 64)
    left, right = halves(48, 64)
    cfg = replace(TINY, iterations=(4,), size=64, scales=(0.5, 1.0))
    regions = [Region(left, 0), Region(right, None)]
    direct = stylize(photo, features, cfg, styles=[painting], regions=regions).image
    cached = stylize(
        photo, features, cfg, targets=[compute_style_targets(painting, features, cfg)], regions=regions
    ).image
    assert torch.equal(direct, cached)
