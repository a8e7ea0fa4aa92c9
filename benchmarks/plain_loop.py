"""The batch without orchestration: the same pairs and parameters as a manifest, in a plain loop
over the core. This is the baseline that ``nst run``'s overhead is measured against.

    python -m benchmarks.plain_loop MANIFEST OUTPUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from nst_batch.core import stylize
from nst_batch.tasks.pair.image_files import encode_image, load_image
from nst_batch.tasks.pair.networks import get_features
from nst_batch.tasks.planning.plan import load_plan


def main(argv: list[str]) -> int:
    manifest, output = argv
    plan = load_plan(manifest)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for pair in plan.pairs:
        cfg = pair.config
        features = get_features(
            plan.settings.runtime.weights,
            plan.settings.runtime.weights_preprocessing,
            cfg.layers[-1],
            cfg.pooling,
            torch.device("cpu"),
        )
        content = load_image(pair.content_uri).rgb
        styles = [load_image(s.uri).rgb for s in pair.styles]
        result = stylize(content, features, cfg, styles=styles)  # style targets computed for every pair
        (out / f"{pair.name}.png").write_bytes(encode_image(result.image, "PNG"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
