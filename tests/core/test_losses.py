import pytest
import torch

from nst_batch.core.losses import content_loss, gram_matrix, gram_style_loss, style_loss, total_variation


def test_gram_known_value_and_shape():
    feats = torch.ones(2, 4, 3, 5)
    gram = gram_matrix(feats)
    assert gram.shape == (2, 4, 4)
    # F F^T / (C H W): every entry is (H W) / (C H W) = 1 / C.
    assert torch.allclose(gram, torch.full((2, 4, 4), 0.25))


def test_gram_is_symmetric_and_float32_for_bf16_input():
    feats = torch.randn(1, 8, 6, 6).bfloat16()
    gram = gram_matrix(feats)
    assert gram.dtype == torch.float32
    assert torch.allclose(gram, gram.transpose(1, 2))


def test_gram_does_not_depend_on_image_size_for_a_periodic_texture():
    tile = torch.rand(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    big = tile.repeat(1, 1, 3, 2)  # the same texture over 6x the area
    assert torch.allclose(gram_matrix(tile), gram_matrix(big), rtol=1e-5, atol=1e-7)


def test_total_variation_does_not_depend_on_image_size():
    stripes = torch.tensor([0.0, 1.0]).repeat(8).view(1, 1, 1, 16).expand(1, 3, 16, 16).contiguous()
    big = stripes.repeat(1, 1, 4, 4)
    assert total_variation(stripes) == pytest.approx(total_variation(big).item(), rel=0.02)


def test_content_loss_known_value():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.full((1, 2, 2, 2), 3.0)
    assert content_loss(a, b).item() == pytest.approx(9.0)
    assert content_loss(b, b).item() == 0.0


def test_style_loss_known_value_and_broadcast_target():
    gram = torch.zeros(1, 2, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert style_loss(gram, target).item() == pytest.approx(0.5)


def test_total_variation_known_value():
    image = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert total_variation(image).item() == pytest.approx(1.0)  # dx = 1 everywhere, dy = 0
    assert total_variation(torch.ones(1, 3, 1, 1)).item() == 0.0


@pytest.mark.parametrize(
    "fn, shapes",
    [
        (content_loss, [(1, 3, 4, 4), (1, 3, 4, 4)]),
        (lambda a, b: style_loss(gram_matrix(a), b), [(1, 3, 4, 4), (3, 3)]),
        (total_variation, [(1, 2, 5, 4)]),
    ],
)
def test_gradcheck(fn, shapes):
    gen = torch.Generator().manual_seed(0)
    inputs = tuple(torch.rand(*s, dtype=torch.float64, generator=gen).requires_grad_(True) for s in shapes)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def _symmetric(c: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    m = torch.rand(c, c, dtype=dtype, generator=gen)
    return m + m.T


def test_gram_style_loss_gradcheck():
    # The hand-written backward against finite differences (double precision).
    gen = torch.Generator().manual_seed(1)
    feats = torch.rand(1, 3, 4, 5, dtype=torch.float64, generator=gen).requires_grad_(True)
    target = _symmetric(3, gen)
    assert torch.autograd.gradcheck(lambda f: gram_style_loss(f, target), (feats,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape, target_batch", [((1, 8, 6, 7), False), ((2, 4, 5, 5), True)])
def test_gram_style_loss_matches_autograd_of_the_plain_formula(shape, target_batch):
    gen = torch.Generator().manual_seed(2)
    feats = torch.rand(*shape, generator=gen)
    c = shape[1]
    target = (
        torch.stack([_symmetric(c, gen, torch.float32) for _ in range(shape[0])])
        if target_batch
        else _symmetric(c, gen, torch.float32)
    )
    a = feats.clone().requires_grad_(True)
    b = feats.clone().requires_grad_(True)
    (3.0 * gram_style_loss(a, target)).backward()
    (3.0 * style_loss(gram_matrix(b), target)).backward()
    assert torch.allclose(gram_style_loss(feats, target), style_loss(gram_matrix(feats), target), rtol=1e-5)
    assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-9)


def test_gram_style_loss_keeps_the_feature_dtype_of_its_gradient():
    feats = torch.rand(1, 4, 3, 3).to(torch.bfloat16).requires_grad_(True)
    loss = gram_style_loss(feats, torch.eye(4))
    assert loss.dtype == torch.float32
    loss.backward()
    assert feats.grad is not None and feats.grad.dtype == torch.bfloat16


def test_shape_errors_are_readable():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gram_matrix(torch.ones(3, 4))
    with pytest.raises(ValueError, match="differ"):
        content_loss(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 4, 4))
    with pytest.raises(ValueError, match="differ"):
        style_loss(torch.ones(1, 2, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match="3 channels"):
        gram_style_loss(torch.ones(1, 3, 2, 2), torch.ones(2, 2))
