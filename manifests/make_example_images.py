"""Procedurally generated example images, so the examples need nothing from outside the project.

    python manifests/make_example_images.py [OUT_DIR]   (default: manifests/example)

Two "photos" (a lake landscape and a city at dusk) and two "paintings" (swirling strokes in the
manner of a night sky, and a warm mosaic). Deterministic: the same files every time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 512, 384


def _fractal_ridge(rng: np.random.Generator, width: int, octaves: int = 6) -> np.ndarray:
    x = np.linspace(0, 1, width)
    ridge = np.zeros(width)
    for o in range(octaves):
        freq, amp = 2**o, 0.5**o
        phase = rng.uniform(0, 2 * math.pi)
        ridge += amp * np.sin(2 * math.pi * freq * x * rng.uniform(0.8, 1.2) + phase)
    return ridge / 2


def landscape() -> Image.Image:
    rng = np.random.default_rng(1)
    y = np.linspace(0, 1, H)[:, None, None]
    sky = (1 - y) * np.array([90, 150, 230]) + y * np.array([250, 210, 170])
    img = np.broadcast_to(sky, (H, W, 3)).copy()
    yy, xx = np.mgrid[0:H, 0:W]
    sun = (xx - 380) ** 2 + (yy - 110) ** 2 < 38**2
    img[sun] = [255, 235, 150]
    for base, colour in ((0.45, (110, 120, 150)), (0.55, (60, 90, 70)), (0.62, (35, 65, 40))):
        ridge = (base + 0.08 * _fractal_ridge(rng, W)) * H
        mask = yy > ridge[None, :]
        shade = 1 - 0.3 * (yy - ridge[None, :]) / H
        img[mask] = np.array(colour)[None, :] * shade[mask][:, None]
    lake_top = int(0.72 * H)
    reflection = img[lake_top - (H - lake_top) : lake_top][::-1] * 0.6 + np.array([20, 40, 70]) * 0.4
    img[lake_top:] = reflection[: H - lake_top]
    ripples = 6 * np.sin(yy[lake_top:] * 0.9 + np.sin(xx[lake_top:] * 0.05) * 3)
    img[lake_top:] += ripples[..., None]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(40):  # pine trees on the near shore
        x0, base = rng.uniform(0, W), lake_top - rng.uniform(0, 6)
        h = rng.uniform(25, 60)
        draw.polygon(
            [(x0, base - h), (x0 - h / 4, base), (x0 + h / 4, base)], fill=(20, 45 + int(rng.uniform(0, 30)), 25)
        )
    return pil.filter(ImageFilter.GaussianBlur(0.6))


def city() -> Image.Image:
    rng = np.random.default_rng(2)
    y = np.linspace(0, 1, H)[:, None, None]
    sky = (1 - y) * np.array([40, 30, 90]) + y * np.array([240, 130, 80])
    pil = Image.fromarray(np.broadcast_to(sky, (H, W, 3)).astype(np.uint8).copy())
    draw = ImageDraw.Draw(pil)
    x = 0
    while x < W:
        w, h = rng.integers(25, 70), rng.integers(80, 280)
        shade = int(rng.integers(20, 60))
        draw.rectangle([x, H - h, x + w, H], fill=(shade, shade, shade + 20))
        for wy in range(H - h + 8, H - 10, 14):
            for wx in range(x + 5, x + w - 8, 12):
                if rng.random() < 0.45:
                    draw.rectangle([wx, wy, wx + 5, wy + 7], fill=(255, 220 - int(rng.integers(0, 60)), 120))
        x += w + int(rng.integers(0, 6))
    draw.ellipse([60, 40, 100, 80], fill=(250, 245, 220))
    return pil


def swirls() -> Image.Image:
    rng = np.random.default_rng(3)
    pil = Image.new("RGB", (W, H), (20, 40, 90))
    draw = ImageDraw.Draw(pil)
    palette = [(30, 60, 140), (60, 110, 190), (240, 210, 80), (250, 240, 170), (20, 30, 70), (90, 150, 200)]
    centres = [(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(40, 140)) for _ in range(7)]
    for _ in range(5000):  # short curved strokes following a swirling flow field
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        colour = palette[int(rng.integers(0, len(palette)))]
        points = [(x, y)]
        for _ in range(8):
            angle = sum(
                math.atan2(y - cy, x - cx) + math.pi / 2 for cx, cy, r in centres if math.hypot(x - cx, y - cy) < 3 * r
            )
            angle = angle if angle else 0.3 * math.sin(y / 40)
            x, y = x + 4 * math.cos(angle), y + 4 * math.sin(angle)
            points.append((x, y))
        draw.line(points, fill=colour, width=int(rng.integers(2, 5)))
    return pil


def mosaic() -> Image.Image:
    rng = np.random.default_rng(4)
    pil = Image.new("RGB", (W, H), (200, 120, 60))
    draw = ImageDraw.Draw(pil)
    palette = [(200, 80, 40), (230, 170, 60), (120, 40, 30), (240, 220, 180), (60, 90, 110), (170, 60, 80)]
    for _ in range(900):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(6, 30)
        n = int(rng.integers(3, 6))
        pts = [
            (
                cx + r * math.cos(2 * math.pi * k / n + rng.uniform(0, 1)),
                cy + r * math.sin(2 * math.pi * k / n + rng.uniform(0, 1)),
            )
            for k in range(n)
        ]
        draw.polygon(pts, fill=palette[int(rng.integers(0, len(palette)))], outline=(40, 20, 10))
    return pil


IMAGES = {
    "photos/lake.png": landscape,
    "photos/city.png": city,
    "styles/swirls.png": swirls,
    "styles/mosaic.png": mosaic,
}


def main(out: Path) -> None:
    for name, make in IMAGES.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make().save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "example")
