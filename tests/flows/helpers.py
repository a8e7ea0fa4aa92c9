from pathlib import Path

from PIL import Image

from tests.synthetic import painting_like, photo_like

TINY = "defaults: {size: 32, scales: [1.0], iterations: 2}\n"


def save(tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
    return path


def make_batch(root: Path, corrupt: bool = False) -> Path:
    """Two photos (plus a corrupt one if asked) x two paintings; returns the manifest path."""
    save(photo_like(48, 64), root / "photos" / "a.png")
    save(photo_like(48, 64, seed=5).flip(-1), root / "photos" / "b.png")
    if corrupt:
        (root / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save(painting_like(40, 40), root / "styles" / "stripes.png")
    save(painting_like(40, 40).flip(-1).roll(7, -1), root / "styles" / "waves.png")
    manifest = root / "m.yaml"
    manifest.write_text(TINY + "output: out\nstyles: {stripes: styles/stripes.png, waves: styles/waves.png}\ncontents: [photos/*.png]\n")
    return manifest
