"""VGG-19's layer names and shapes, without PyTorch: the config and the CLI's ``--help`` need
them, and importing torch costs seconds."""

from __future__ import annotations

# (block, convs in block, output channels), Simonyan & Zisserman configuration E.
BLOCKS: tuple[tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, convs, _ in BLOCKS:
        for c in range(1, convs + 1):
            names += [f"conv{block}_{c}", f"relu{block}_{c}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYER_NAMES: tuple[str, ...] = _layer_names()
CONV_NAMES: tuple[str, ...] = tuple(n for n in LAYER_NAMES if n.startswith("conv"))


def conv_shapes() -> dict[str, tuple[int, int]]:
    """(out_channels, in_channels) of every convolution."""
    shapes: dict[str, tuple[int, int]] = {}
    in_ch = 3
    for block, convs, out_ch in BLOCKS:
        for c in range(1, convs + 1):
            shapes[f"conv{block}_{c}"] = (out_ch, in_ch)
            in_ch = out_ch
    return shapes


def channels_of(layer: str) -> int:
    """Channels of a layer's output."""
    # conv4_2, relu4_2 and pool4 all carry the block number after their 4-letter prefix.
    return BLOCKS[int(layer[4]) - 1][2]


def downsamplings(layer: str) -> int:
    """How many poolings come before ``layer`` (its feature map is 1 / 2^n of the image)."""
    return sum(1 for name in LAYER_NAMES[: LAYER_NAMES.index(layer)] if name.startswith("pool"))
