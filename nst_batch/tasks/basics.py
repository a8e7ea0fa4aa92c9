"""The small things every part of the tasks ring (and the CLI) says or writes the same way: a count
in words, a sha256, a JSON file's bytes. One helper each."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def plural(n: int, noun: str) -> str:
    """``1 pair``, ``3 pairs`` (nouns with a plain plural)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(value: Any) -> bytes:
    """A JSON file's bytes as every file of ours is written: indented, ending with a newline."""
    return (json.dumps(value, indent=2) + "\n").encode()
