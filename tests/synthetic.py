"""Small synthetic images for tests: nothing from ../shared is needed."""

from __future__ import annotations

import math

import torch


def photo_like(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth 'photo': a sky gradient, a dark hill and a bright disc. (1, 3, H, W) in [0, 1]."""
    y = torch.linspace(0, 1, height).view(-1, 1).expand(height, width)
    x = torch.linspace(0, 1, width).view(1, -1).expand(height, width)
    sky = torch.stack([0.4 + 0.3 * y, 0.6 + 0.2 * y, 0.9 - 0.2 * y])
    hill = (y > 0.6 + 0.15 * torch.sin(6 * x)).float()
    ground = torch.stack([0.2 + 0.1 * x, 0.5 - 0.2 * y, 0.1 + 0 * x])
    disc = (((x - 0.7) ** 2 + (y - 0.3) ** 2) < 0.02).float()
    image = sky * (1 - hill) + ground * hill
    image = image * (1 - disc) + torch.tensor([1.0, 0.9, 0.3]).view(3, 1, 1) * disc
    noise = torch.randn(3, height, width, generator=torch.Generator().manual_seed(seed)) * 0.01
    return (image + noise).clamp(0, 1)[None].contiguous()


def painting_like(height: int = 48, width: int = 64) -> torch.Tensor:
    """A 'painting' with strong texture: coloured diagonal strokes. (1, 3, H, W) in [0, 1]."""
    y = torch.arange(height).view(-1, 1).float()
    x = torch.arange(width).view(1, -1).float()
    a = torch.sin((x + y) * 2 * math.pi / 6)
    b = torch.sin((x - 2 * y) * 2 * math.pi / 11)
    image = torch.stack([0.5 + 0.45 * a, 0.3 + 0.25 * b, 0.6 - 0.35 * a * b])
    return image.clamp(0, 1)[None].contiguous()


def blocks_like(height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A 'photo' with strong structure: flat coloured rectangles with sharp edges (windows on a
    facade), which VGG's deep layers respond to. (1, 3, H, W) in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.empty(3, height, width)
    image[:] = torch.tensor([0.55, 0.7, 0.9]).view(3, 1, 1)
    for _ in range(12):
        h, w = (int(v) for v in torch.randint(height // 8, height // 2, (2,), generator=gen))
        top, left = (
            int(torch.randint(0, height - h, (1,), generator=gen)),
            int(torch.randint(0, width - w, (1,), generator=gen)),
        )
        image[:, top : top + h, left : left + w] = torch.rand(3, 1, 1, generator=gen)
    return image[None].contiguous()
