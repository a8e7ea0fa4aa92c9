"""What every benchmark script shares: where the shared images are, list options, JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"


def int_list(text: str) -> list[int]:
    """``512,1024`` -> [512, 1024] (an argparse type)."""
    return [int(x) for x in text.split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    """``0,0.25`` -> [0.0, 0.25] (an argparse type)."""
    return [float(x) for x in text.split(",") if x.strip()]


def write_json(path: str | Path, results: dict[str, Any]) -> None:
    """Written whole or not at all (a rename), so an interrupted run keeps the last complete file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".part")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)


def report(text: str, results: dict[str, Any], json_path: str | Path | None) -> int:
    """A benchmark's ending: print its tables, write its JSON when asked; the exit status."""
    print(text)
    if json_path:
        write_json(json_path, results)
    return 0
