"""A pair's row in a run's summary: what became of it (a :class:`Status`) and its figures."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any


class Status(str, Enum):
    """What became of a pair; equal to its word (``Status.FAILED == "failed"``), which the
    summary's JSON and the gallery use."""

    PRODUCED = "produced"
    SKIPPED = "skipped"  # an earlier run made it: its output and sidecar checked out
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass
class PairRow:
    """One pair's row. ``target_keys`` and ``computed_keys`` (the style targets it used, and those
    it computed itself) stay in the run: the summary counts them into ``targets_computed`` and
    ``targets_cached``."""

    name: str
    content: str
    styles: list[str]
    style_names: list[str]
    blend: list[float]
    output: str
    sidecar: str
    status: Status
    sweep: dict[str, Any] | None = None
    sweep_of: str = ""
    mask: str = ""  # the mask's URI, for a pair styled by region
    reason: str = ""  # a failed pair's one line
    redone: str = ""  # why an earlier output did not check out, when the pair was produced again
    notes: list[str] = field(default_factory=list)  # what its inputs lost on the way (frames, alpha), one line each
    final_losses: dict[str, float] | None = None
    quality: dict[str, dict[str, float]] | None = None  # content distance and style gain by side (nst_batch.core.quality)
    iterations: int | None = None
    wall_time_s: float | None = None
    timings: dict[str, float] | None = None
    worker: str | None = None
    live_s: float = 0.0  # seconds the live view cost this pair
    target_keys: list[str] = field(default_factory=list)
    computed_keys: list[str] = field(default_factory=list)
    targets_computed: int = 0
    targets_cached: int = 0

    def to_json(self) -> dict[str, Any]:
        """The summary's row: every field that says something (the run-internal keys left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("target_keys", "computed_keys") or value is None or value == "" or (f.name == "notes" and not value):
                continue
            out[f.name] = value.value if isinstance(value, Status) else value
        return out

    def facts(self) -> dict[str, Any]:
        """What a progress display reads of it (sent as a Dask event from a worker)."""
        return {"name": self.name, "status": self.status.value, "wall_time_s": self.wall_time_s, "reason": self.reason, "notes": self.notes}


def shown_quality(quality: Any) -> tuple[int, float, float] | None:
    """(side, content distance, style gain) of a pair's measured quality (its sidecar's or row's
    ``quality``) at gallery scale: its smallest measured side, 256 px for larger outputs. None
    when there is none or it is malformed (a sidecar is anyone's text)."""
    if not isinstance(quality, dict) or not quality:
        return None
    try:
        side = min(quality, key=int)
        return int(side), float(quality[side]["content"]), float(quality[side]["style_gain"])
    except (KeyError, TypeError, ValueError):
        return None
