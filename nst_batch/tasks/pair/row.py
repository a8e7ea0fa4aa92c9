"""A run's summary (:class:`RunSummary`) and its pairs' rows: what became of each pair (a
:class:`Status`) and its figures. Records: written as JSON by the flow, read back by ``nst run``,
``nst runs`` and the gallery through one ``to_json``/``from_json`` each."""

from __future__ import annotations

from collections.abc import Mapping
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

    @classmethod
    def from_json(cls, data: Any) -> PairRow | None:
        """A row of a summary read back; None when it is not one (no name). Values of the wrong
        type (a summary is anyone's text) read as their defaults; a status we do not know as failed."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        kept: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if f.name in data and f.name not in ("name", "status", "target_keys", "computed_keys") and _fits(value, f.type):
                kept[f.name] = value
        defaults = {"content": "", "styles": [], "style_names": [], "blend": [], "output": "", "sidecar": ""}
        status = Status(data["status"]) if data.get("status") in _STATUS_WORDS else Status.FAILED
        return cls(**{**defaults, **kept, "name": data["name"], "status": status})

    def facts(self) -> dict[str, Any]:
        """What a progress display reads of it (sent as a Dask event from a worker)."""
        return {"name": self.name, "status": self.status.value, "wall_time_s": self.wall_time_s, "reason": self.reason, "notes": self.notes}


_STATUS_WORDS = {s.value for s in Status}
# What a field's annotation (a string: annotations are postponed) takes from JSON, by its first word.
_JSON_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "list": (list,), "dict": (dict,), "int": (int,), "float": (int, float)}


def _fits(value: Any, annotation: Any) -> bool:
    kinds = _JSON_TYPES.get(str(annotation).split("[")[0].split(" ")[0])
    return kinds is not None and isinstance(value, kinds) and not isinstance(value, bool)


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


@dataclass(frozen=True)
class Failure:
    """A failed pair, as the summary lists it."""

    name: str
    content: str
    styles: list[str]
    reason: str


@dataclass
class RunSummary:
    """A run's summary: what ``summary.json`` (and the run's copy under ``runs/``) holds, what the
    flow returns (as :meth:`to_json`), what ``nst run`` prints and the gallery's run panel shows."""

    manifest: str
    output: str  # the output root
    run_id: str  # the Prefect flow run's id
    started_at: str  # ISO 8601, UTC; "" in a summary written before it was recorded
    finished_at: str
    counts: dict[str, int]  # planned, produced, skipped, failed
    style_targets: dict[str, int]  # computed, from_cache
    failures: list[Failure]
    pairs: list[PairRow]
    wall_time_s: float
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)  # per style: see quality_spread
    notes: list[str] = field(default_factory=list)  # what the plan left out (files a listing skipped, ...)
    warnings: list[str] = field(default_factory=list)
    live_view_s: float | None = None  # seconds the live gallery cost the run
    summary_uri: str | None = None  # where it was written; None until then, or when it could not be
    gallery: str | None = None  # the gallery's index.html, when built

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    def warn(self, message: str) -> str:
        self.warnings.append(message)
        return message

    def to_json(self) -> dict[str, Any]:
        """The JSON form: every field that says something, and ``done_earlier`` (the skipped
        pairs: an earlier run made them, their images are in the gallery)."""
        out: dict[str, Any] = {
            "manifest": self.manifest, "output": self.output, "run_id": self.run_id, "started_at": self.started_at,
            "finished_at": self.finished_at, "counts": self.counts, "done_earlier": self.counts.get("skipped", 0),
            "style_targets": self.style_targets, "failures": [vars(f) for f in self.failures],
            "pairs": [r.to_json() for r in self.pairs], "wall_time_s": self.wall_time_s,
        }
        optional = {"quality": self.quality, "notes": self.notes, "warnings": self.warnings, "live_view_s": self.live_view_s,
                    "summary_uri": self.summary_uri, "gallery": self.gallery}
        out.update({k: v for k, v in optional.items() if v not in (None, [], {})})
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        """A summary read back (``nst runs``, the gallery, the flow's result): a file is anyone's
        text, so a value of the wrong type reads as empty; raises ValueError when it is no summary."""
        if not isinstance(data, Mapping) or not isinstance(data.get("counts"), Mapping):
            raise ValueError("not a run summary (no counts)")
        failures = [Failure(_str(f.get("name")), _str(f.get("content")), _strs(f.get("styles")), _str(f.get("reason")))
                    for f in _list(data.get("failures")) if isinstance(f, Mapping)]
        return cls(
            manifest=_str(data.get("manifest")), output=_str(data.get("output")), run_id=_str(data.get("run_id")),
            started_at=_str(data.get("started_at")), finished_at=_str(data.get("finished_at")),
            counts={str(k): int(v) for k, v in data["counts"].items() if isinstance(v, int | float)},
            style_targets={str(k): int(v) for k, v in _dict(data.get("style_targets")).items() if isinstance(v, int | float)},
            failures=failures, pairs=[r for r in map(PairRow.from_json, _list(data.get("pairs"))) if r is not None],
            wall_time_s=_float(data.get("wall_time_s")) or 0.0, quality=_dict(data.get("quality")), notes=_strs(data.get("notes")),
            warnings=_strs(data.get("warnings")), live_view_s=_float(data.get("live_view_s")),
            summary_uri=data.get("summary_uri") if isinstance(data.get("summary_uri"), str) else None,
            gallery=data.get("gallery") if isinstance(data.get("gallery"), str) else None)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: Any) -> list[str]:
    return [v for v in _list(value) if isinstance(v, str)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
