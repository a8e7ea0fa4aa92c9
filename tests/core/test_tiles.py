"""Tiles: coverage and blending, tiled Gram targets, and a tiled stylization end to end."""

from dataclasses import replace

import pytest
import torch

from nst_batch.core import StepInfo, StyleConfig, compute_style_targets, stylize
from nst_batch.core.tiles import feather, optimise_in_tiles, tile_boxes
from tests.synthetic import painting_like, photo_like


@pytest.mark.parametrize(
    "height, width, tile, overlap", [(100, 250, 64, 16), (64, 64, 64, 8), (300, 129, 128, 32), (40, 30, 128, 32)]
)
def test_boxes_cover_the_image_within_the_tile_with_enough_overlap(height, width, tile, overlap):
    boxes = tile_boxes(height, width, tile, overlap)
    covered = torch.zeros(height, width)
    for top, left, h, w in boxes:
        assert h <= tile and w <= tile and top + h <= height and left + w <= width
        covered[top : top + h, left : left + w] += 1
    assert bool((covered >= 1).all())
    tops = sorted({b[0] for b in boxes})
    assert all(a + min(tile, height) - b >= overlap for a, b in zip(tops, tops[1:], strict=False))


def test_feather_ramps_only_toward_other_tiles():
    height, width, overlap = 100, 250, 16
    total = torch.zeros(1, 1, height, width)
    for box in tile_boxes(height, width, 64, overlap):
        top, left, h, w = box
        weight = feather(box, height, width, overlap)
        assert weight.shape == (1, 1, h, w) and float(weight.max()) == 1.0 and float(weight.min()) > 0
        if top == 0 and left == 0:
            assert float(weight[0, 0, 0, 0]) == 1.0  # the image's own corner is not faded
        total[..., top : top + h, left : left + w] += weight
    assert float(total.min()) > 0.5


def test_blending_identical_patches_changes_nothing():
    image = torch.rand(1, 3, 90, 130)
    out = optimise_in_tiles(image, image, tile_boxes(90, 130, 64, 16), 16, lambda i, start, content: start)
    assert torch.allclose(out, image, atol=1e-6)


def test_tiled_gram_targets_are_close_to_the_whole_images(features):
    style = painting_like(240, 320)
    cfg = StyleConfig(size=320, scales=(1.0,))
    whole = compute_style_targets(style, features, cfg)
    tiled = compute_style_targets(style, features, replace(cfg, tile_size=256))
    assert tiled.spec.tile == 256 and whole.spec.tile == 0
    for layer in cfg.style_layers:
        a, b = whole.tables[320][layer], tiled.tables[320][layer]
        assert float(torch.linalg.norm(a - b) / torch.linalg.norm(a)) < 0.05, layer


def test_a_tiled_scale_stylizes_the_whole_image_and_reports_progress(features):
    content, style = photo_like(96, 160), painting_like(64, 64)
    cfg = StyleConfig(
        size=160, scales=(0.5, 1.0), iterations=(3, 2), tile_size=128, tile_overlap=32, early_stop_rtol=0.0
    )
    events: list[StepInfo] = []
    result = stylize(content, features, cfg, styles=[style], on_step=events.append, report_every=1)
    assert result.image.shape == (1, 3, 96, 160)
    coarse, fine = result.scales
    assert (coarse.iterations, coarse.max_iterations) == (3, 3)  # 80 px: below the tile, not tiled
    assert (fine.iterations, fine.max_iterations) == (4, 4)  # two tiles of 2 iterations
    assert set(fine.losses) == {"content", "style", "tv", "total"}
    last = [e for e in events if e.scale_index == 1]
    assert [e.iteration for e in last] == [1, 2, 3, 4, 4] and last[-1].scale_done
    # Each tile moved its pixels: the output differs from the upsampled coarse result everywhere it was optimised.
    assert float((result.image - content).abs().mean()) > 0.01
