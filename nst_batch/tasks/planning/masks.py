"""The colours of a photo's mask and the styles they map to (``mask_styles``): their grammar and
their consistency with a pair's styles, checked when a manifest or a command line is read. The
mask image itself is read with the pair (nst_batch.tasks.pair.masks)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

KEEP = "keep"
_COLOUR = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#ff0000`` or ``#f00`` (the ``#`` optional) -> (255, 0, 0); raises ValueError."""
    match = _COLOUR.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a colour: write #rrggbb or #rgb, e.g. #ff0000")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def colour_name(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def mask_styles_problems(mask_styles: Mapping[str, str], style_names: Sequence[str]) -> list[str]:
    """What is wrong with a colour -> style mapping for a pair of these styles: bad colours, one
    colour twice, a style the pair does not have, a style of the pair no colour names, all keep."""
    problems: list[str] = []
    seen: dict[tuple[int, int, int], str] = {}
    for colour, label in mask_styles.items():
        try:
            rgb = parse_colour(colour)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if rgb in seen:
            problems.append(f"{colour} and {seen[rgb]} are the same colour")
        seen[rgb] = colour
        if label != KEEP and label not in style_names:
            problems.append(
                f"{colour}: {label!r} is not one of this pair's styles ({', '.join(style_names)}) nor {KEEP!r}"
            )
    used = set(mask_styles.values())
    unused = [s for s in style_names if s not in used]
    if unused:
        problems.append(
            f"no colour takes the style(s) {', '.join(unused)}: map a colour to each, or leave them out of `style`"
        )
    if mask_styles and used == {KEEP}:
        problems.append("every colour keeps the photo: map at least one to a style")
    return problems


def mask_styles_from_text(text: str) -> dict[str, str]:
    """``#ff0000=starry,#000000=keep`` (the CLI's form) -> {"#ff0000": "starry", "#000000": "keep"};
    raises ValueError."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        colour, sep, label = part.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"{part!r}: write COLOUR=STYLE, e.g. #ff0000=starry or #000000=keep")
        parse_colour(colour)
        out[colour.strip()] = label.strip()
    if not out:
        raise ValueError("no COLOUR=STYLE entries")
    return out
