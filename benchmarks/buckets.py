"""Shape buckets: how many shapes a realistic collection has, and what bringing a photo to its
bucket's shape and back costs.

1. Distinct working shapes against buckets (nst_batch.tasks.planning.buckets) for a collection of
   the sizes cameras and phones write (4:3, 3:2, 16:9, 1:1, 4:5; landscape and portrait), at
   each size.
2. The round trip: each shared photo, cropped to each aspect and brought to its working shape at
   512 px, resampled to its bucket's shape and back (the stylizer's resize, as a batch does),
   against the same image through a JPEG at quality 95 (what an output goes through anyway): PSNR.

    python -m benchmarks.buckets --images ../shared/images
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DEFAULT_IMAGES, int_list, report
from nst_batch.core.image_ops import resize
from nst_batch.tasks.planning.buckets import bucket_shape, distinct_shapes, working_shape

# (height, width), landscape; each is also taken as a portrait.
CAMERAS = {
    "4:3": [(3024, 4032), (3000, 4000), (2992, 4000), (2448, 3264), (1536, 2048), (3456, 4608), (2736, 3648)],
    "3:2": [(4000, 6000), (3648, 5472), (4160, 6240), (2832, 4256), (3456, 5184), (4024, 6048)],
    "16:9": [(1080, 1920), (2160, 3840), (2268, 4032), (1440, 2560), (2250, 4000)],
    "1:1": [(3024, 3024), (1080, 1080)],
    "4:5": [(1080, 1350), (2400, 3000)],
}
ASPECTS = {"4:3": 4 / 3, "3:2": 3 / 2, "16:9": 16 / 9, "4:5": 5 / 4}


def collection() -> list[tuple[int, int]]:
    sizes = [s for group in CAMERAS.values() for s in group]
    return sizes + [(w, h) for h, w in sizes if h != w]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def jpeg(image: torch.Tensor, quality: int = 95) -> torch.Tensor:
    """The image after a round trip through the encoder and decoder every output goes through."""
    from nst_batch.tasks.pair.image_files import decode_image, encode_image

    return decode_image(encode_image(image, "JPEG", quality=quality), "round-trip.jpg").rgb


def round_trips(images: Path, size: int) -> list[dict[str, Any]]:
    from nst_batch.tasks.pair.image_files import load_image

    rows = []
    for path in sorted((images / "content").iterdir()):
        photo = load_image(path).rgb
        for name, aspect in ASPECTS.items():
            h, w = photo.shape[-2:]
            ch, cw = (h, round(h * aspect)) if w / h > aspect else (round(w / aspect), w)
            crop = photo[..., (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
            own = resize(crop, working_shape(ch, cw, size))
            bucket = bucket_shape(ch, cw, size)
            back = resize(resize(own, bucket), tuple(own.shape[-2:]))
            rows.append(
                {
                    "photo": path.stem,
                    "aspect": name,
                    "shape": list(own.shape[-2:]),
                    "bucket": list(bucket),
                    "stretch_pct": round(100 * abs(min(bucket) / min(own.shape[-2:]) - 1), 2),
                    "round_trip_db": round(psnr(own, back), 2),
                    "jpeg95_db": round(psnr(own, jpeg(own)), 2),
                }
            )
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = collection()
    counts = {
        str(size): dict(zip(("working_shapes", "buckets"), distinct_shapes(sizes, size), strict=True))
        for size in args.sizes
    }
    buckets = sorted({bucket_shape(h, w, 512) for h, w in sizes})
    return {
        "photos": len(sizes),
        "counts": counts,
        "buckets_512": [list(b) for b in buckets],
        "round_trips": round_trips(Path(args.images), 512),
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['photos']} camera sizes (landscape and portrait)",
        "",
        "| size | working shapes | buckets |",
        "|---|---|---|",
    ]
    lines += [f"| {size} | {c['working_shapes']} | {c['buckets']} |" for size, c in r["counts"].items()]
    lines += [
        "",
        "| photo | aspect | shape at 512 | bucket | stretch % | round trip dB | JPEG q95 dB |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {x['photo']} | {x['aspect']} | {x['shape'][1]}x{x['shape'][0]} | {x['bucket'][1]}x{x['bucket'][0]} | "
        f"{x['stretch_pct']} | "
        f"{x['round_trip_db']} | {x['jpeg95_db']} |"
        for x in r["round_trips"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.buckets", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DEFAULT_IMAGES))
    p.add_argument("--sizes", type=int_list, default=[256, 512, 1024])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = measure(args)
    return report(table(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
