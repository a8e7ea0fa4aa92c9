"""The pyramid parameterisation: the start at zero, linear, every level reaches the image, and
with it L-BFGS reaches a given loss in fewer iterations than on the pixels."""

import math
from dataclasses import replace

import torch

from nst_batch.core import StepInfo, StyleConfig, stylize, with_images
from nst_batch.core.precondition import Pyramid
from tests.synthetic import photo_like


def test_zero_is_the_start_and_the_map_is_linear():
    start = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    p = Pyramid(start, 3)
    assert torch.equal(p(p.variable()), start)
    a, b = torch.randn(2, 1, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(p(a + 2 * b) - start, (p(a) - start) + 2 * (p(b) - start), atol=1e-5)


def test_a_smooth_gradient_is_amplified_and_a_pixel_one_is_not():
    """The gradient over the variable is P^T g: for a constant g about (1 + 2 + 4 + 8)x, for a
    checkerboard g about 1x (the coarse levels average it away)."""
    start = torch.zeros(1, 1, 32, 32)
    p = Pyramid(start, 3)
    smooth, checker = torch.ones(1, 1, 32, 32), (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1
    gains = []
    for g in (smooth, checker.reshape(1, 1, 32, 32)):
        z = p.variable().requires_grad_(True)
        (p(z) * g).sum().backward()
        gains.append(float((z.grad * g).sum() / (g * g).sum()))
    assert gains[0] > 10 and abs(gains[1] - 1) < 0.1, gains


def test_levels_coarser_than_a_pixel_are_left_out():
    assert len(Pyramid(torch.zeros(1, 3, 8, 40), 6).sizes) == 3  # 4x20, 2x10, 1x5


def large_strokes(size: int) -> torch.Tensor:
    """A painting whose structure spans ~40 px: what the pyramid is for (a photo's fine noise as
    the style gains nothing from it)."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    waves = [
        torch.sin(2 * math.pi * (x + y) / 40),
        torch.sin(2 * math.pi * x / 40 + 1),
        torch.cos(2 * math.pi * y / 40),
    ]
    return (0.5 + 0.45 * torch.stack(waves))[None].float()


def test_the_pyramid_reaches_the_pixels_loss_in_half_the_iterations(features):
    content, style = photo_like(128, 128), large_strokes(128)
    cfg = StyleConfig(size=128, scales=(1.0,), iterations=(40,), early_stop_rtol=0.0, precision="fp32")
    losses = {}
    for levels in (0, 3):
        events: list[StepInfo] = []
        stylize(
            content, features, replace(cfg, precondition=levels), styles=[style], on_step=events.append, report_every=1
        )
        losses[levels] = [e.losses["total"] for e in events if e.losses is not None]
    target = losses[0][-1]  # what 40 iterations on the pixels reach
    reached = next((i + 1 for i, loss in enumerate(losses[3]) if loss <= target), None)
    assert reached is not None and reached <= 20, (reached, losses[3][-1], target)


def test_the_output_is_an_image_in_range_and_the_previews_are_images(features, content, style):
    cfg = StyleConfig(size=32, scales=(1.0,), iterations=(6,), early_stop_rtol=0.0, precondition=3)

    def on_step(info: StepInfo) -> None:
        if info.image is not None:
            images.append(info.image)

    images: list[torch.Tensor] = []
    result = stylize(content, features, cfg, styles=[style], on_step=with_images(on_step), report_every=2)
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert images and all(i.shape == result.image.shape for i in images)
    assert (images[-1] - result.image).abs().max() < 1e-6  # the last preview is the output


def test_only_the_first_scale_optimises_the_pyramid(features, content, style, monkeypatch):
    """The strokes form at the first scale; finer scales refine the pixels of an image that has them."""
    import nst_batch.core.stylizer as stylizer

    made: list[tuple[int, ...]] = []

    class Counting(Pyramid):
        def __init__(self, start: torch.Tensor, levels: int) -> None:
            made.append(tuple(start.shape[-2:]))
            super().__init__(start, levels)

    monkeypatch.setattr(stylizer, "Pyramid", Counting)
    cfg = StyleConfig(size=64, scales=(0.5, 1.0), iterations=(3, 2), early_stop_rtol=0.0, precondition=3)
    result = stylize(content, features, cfg, styles=[style])
    assert made == [tuple(result.scales[0].__dict__[k] for k in ("height", "width"))]
    stylize(content, features, replace(cfg, precondition=0), styles=[style])
    assert len(made) == 1  # 0: the pixels everywhere
