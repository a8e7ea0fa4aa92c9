"""A run's summary (:class:`RunSummary`) and its pairs' rows: what became of each pair (a
:class:`Status`) and its figures. Records: written as JSON by the flow, read back by ``nst run``,
``nst runs`` and the gallery through one ``to_json``/``from_json`` each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # records are read where the planner is not imported (nst runs, the gallery)
    from nst_batch.tasks.planning.jobs import BatchSettings, PairJob


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
    quality: dict[str, dict[str, float]] | None = (
        None  # content distance and style gain by side (nst_batch.core.quality)
    )
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
            if (
                f.name in ("target_keys", "computed_keys")
                or value is None
                or value == ""
                or (f.name == "notes" and not value)
            ):
                continue
            out[f.name] = value.value if isinstance(value, Status) else value
        return out

    @classmethod
    def of(cls, pair: PairJob, settings: BatchSettings, status: Status, **found: Any) -> PairRow:
        """The row of ``pair``, whatever became of it (``status``), with what was ``found`` (its
        reason, losses, timings, ...)."""
        return cls(
            name=pair.name,
            content=pair.content_uri,
            styles=[s.uri for s in pair.styles],
            style_names=pair.style_names(),
            blend=pair.blend(),
            output=settings.output_uri(pair.name),
            sidecar=settings.sidecar_uri(pair.name),
            status=status,
            sweep=dict(pair.sweep) if pair.sweep else None,
            sweep_of=pair.sweep_of if pair.sweep else "",
            mask=pair.mask.uri if pair.mask is not None else "",
            **found,
        )

    @classmethod
    def from_json(cls, data: Any) -> PairRow | None:
        """A row of a summary read back; None when it is not one (no name). Values of the wrong
        type (a summary is anyone's text) read as their defaults; a status we do not know as failed."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        kept: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if (
                f.name in data
                and f.name not in ("name", "status", "target_keys", "computed_keys")
                and _fits(value, f.type)
            ):
                kept[f.name] = value
        defaults = {"content": "", "styles": [], "style_names": [], "blend": [], "output": "", "sidecar": ""}
        status = Status(data["status"]) if data.get("status") in _STATUS_WORDS else Status.FAILED
        return cls(**{**defaults, **kept, "name": data["name"], "status": status})

    def facts(self) -> dict[str, Any]:
        """What a progress display reads of it (sent as a Dask event from a worker)."""
        return {
            "name": self.name,
            "status": self.status.value,
            "wall_time_s": self.wall_time_s,
            "reason": self.reason,
            "notes": self.notes,
        }


_STATUS_WORDS = {s.value for s in Status}
# What a field's annotation (a string: annotations are postponed) takes from JSON, by its first word.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "list": (list,),
    "dict": (dict,),
    "int": (int,),
    "float": (int, float),
}


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
            "manifest": self.manifest,
            "output": self.output,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": self.counts,
            "done_earlier": self.counts.get("skipped", 0),
            "style_targets": self.style_targets,
            "failures": [vars(f) for f in self.failures],
            "pairs": [r.to_json() for r in self.pairs],
            "wall_time_s": self.wall_time_s,
        }
        optional = {
            "quality": self.quality,
            "notes": self.notes,
            "warnings": self.warnings,
            "live_view_s": self.live_view_s,
            "summary_uri": self.summary_uri,
            "gallery": self.gallery,
        }
        out.update({k: v for k, v in optional.items() if v not in (None, [], {})})
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        """A summary read back (``nst runs``, the gallery, the flow's result): a file is anyone's
        text, so a value of the wrong type reads as empty; raises ValueError when it is no summary."""
        if not isinstance(data, Mapping) or not isinstance(data.get("counts"), Mapping):
            raise ValueError("not a run summary (no counts)")
        failures = [
            Failure(
                json_text(f.get("name")),
                json_text(f.get("content")),
                _strs(f.get("styles")),
                json_text(f.get("reason")),
            )
            for f in _list(data.get("failures"))
            if isinstance(f, Mapping)
        ]
        return cls(
            manifest=json_text(data.get("manifest")),
            output=json_text(data.get("output")),
            run_id=json_text(data.get("run_id")),
            started_at=json_text(data.get("started_at")),
            finished_at=json_text(data.get("finished_at")),
            counts={str(k): int(v) for k, v in data["counts"].items() if isinstance(v, int | float)},
            style_targets={
                str(k): int(v) for k, v in _dict(data.get("style_targets")).items() if isinstance(v, int | float)
            },
            failures=failures,
            pairs=[r for r in map(PairRow.from_json, _list(data.get("pairs"))) if r is not None],
            wall_time_s=json_number(data.get("wall_time_s")) or 0.0,
            quality=_dict(data.get("quality")),
            notes=_strs(data.get("notes")),
            warnings=_strs(data.get("warnings")),
            live_view_s=json_number(data.get("live_view_s")),
            summary_uri=data.get("summary_uri") if isinstance(data.get("summary_uri"), str) else None,
            gallery=data.get("gallery") if isinstance(data.get("gallery"), str) else None,
        )


def _strs(value: Any) -> list[str]:
    return [v for v in _list(value) if isinstance(v, str)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class InputRecord:
    """An input of a pair: where it was read and its hash; ``size`` (width, height): the photo's."""

    uri: str
    sha256: str
    size: list[int] | None = None
    name: str = ""  # a style's name (the manifest's, or the file's stem)


@dataclass(frozen=True)
class CacheUse:
    """Where one style's targets came from: the cache entry ``key``, read (``hit``) or computed;
    ``rejected``: why an entry that was there could not be used."""

    style: str
    key: str
    hit: bool
    rejected: str = ""


@dataclass(frozen=True)
class StyleFailed:
    """A style whose targets could not be made (a bad image, a storage fault): its pairs fail with ``reason``."""

    style: str
    reason: str


@dataclass
class PairRecord:
    """A pair's sidecar (``<name>.json`` beside its output), and ``nst stylize --metadata`` in the
    same form: the output and its hash (a re-run's skip checks the output against them), the inputs
    and theirs, where the style targets came from, the run (parameters, weights, losses, device,
    versions), where its time went and when it finished. Written by nst_batch.tasks.pair.pipeline;
    read by the skip check (done.py) and the gallery through :meth:`from_json`."""

    name: str
    output: str
    output_bytes: int
    output_sha256: str
    content: InputRecord
    styles: list[InputRecord]
    format: str
    style_cache: list[CacheUse] = field(default_factory=list)  # styles computed without the cache have none
    parameters: dict[str, Any] = field(default_factory=dict)  # StyleConfig.to_json()
    weights: dict[str, Any] = field(default_factory=dict)  # source, preprocessing, sha256
    output_size: list[int] = field(default_factory=list)  # [width, height]
    final_losses: dict[str, float] = field(default_factory=dict)
    iterations: int | None = None
    scales: list[dict[str, Any]] = field(default_factory=list)  # nst_batch.core.ScaleReport of each scale
    wall_time_s: float | None = None
    device: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    pipeline_version: str = ""  # provenance.PIPELINE_VERSION: a sidecar of another version is produced again
    quality: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # by side: content distance, style gain (core.quality)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, setup, stylize, quality, write
    finished_at: str = ""  # ISO 8601, UTC: the gallery shows it for later skips
    # A batch's pair (nst run) only:
    fingerprint: str = ""  # what its inputs and parameters hash to: a re-run skips it while this matches
    mask: dict[str, Any] | None = None  # the mask's URI, hash and colours' styles
    batch: int = 1  # the photos optimised with it as one batch, itself included (core.stylize_batch)
    notes: list[str] = field(default_factory=list)  # what its inputs lost on the way
    sweep: dict[str, Any] = field(default_factory=dict)
    sweep_of: str = ""
    run_id: str = ""  # the flow run that wrote it
    manifest: str = ""  # and from which manifest: a name another manifest's result holds is not replaced
    worker: str | None = None  # the Dask worker that produced it (None outside a cluster)
    # nst stylize only:
    init_image: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The sidecar's JSON: a field that says nothing (empty, None, a batch of 1) is left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "content":
                value = _input_json(value, with_size=True)
            elif f.name == "styles":
                value = [{"name": s.name, "uri": s.uri, "sha256": s.sha256} for s in value]
            elif f.name == "style_cache":
                value = [{k: v for k, v in vars(c).items() if k != "rejected" or v} for c in value]
            if (
                value is None
                or value == ""
                or (f.name not in _ALWAYS and value in ([], {}))
                or (f.name == "batch" and value == 1)
            ):
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Any) -> PairRecord | None:
        """A sidecar read back. None when the file is no sidecar of ours (no name, no styles);
        ValueError when it is one but its inputs cannot be read (the gallery says "unreadable").
        Any other value of the wrong type (a sidecar is anyone's text) reads as its default."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or "styles" not in data:
            return None
        content: Any = data.get("content")
        styles: Any = data.get("styles")
        if (
            not isinstance(content, dict)
            or not isinstance(styles, list)
            or not all(isinstance(s, dict) and "name" in s and "uri" in s for s in styles)
        ):
            raise ValueError(f"{data['name']}: the sidecar's content or styles are not readable")
        kept: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in data and f.name not in _NESTED and _fits(data[f.name], f.type):
                kept[f.name] = data[f.name]
        given: Any = data.get("style_cache")
        cache = [
            CacheUse(str(c["style"]), str(c["key"]), bool(c["hit"]), json_text(c.get("rejected")))
            for c in (given if isinstance(given, list) else [])
            if isinstance(c, dict) and {"style", "key", "hit"} <= c.keys()
        ]
        size = content.get("size")
        return cls(
            **{"output": "", "output_bytes": -1, "output_sha256": "", "format": "", **kept},
            content=InputRecord(
                json_text(content.get("uri")),
                json_text(content.get("sha256")),
                size if isinstance(size, list) else None,
            ),
            styles=[
                InputRecord(json_text(s["uri"]), json_text(s.get("sha256")), name=json_text(s["name"], "?"))
                for s in styles
            ],
            style_cache=cache,
        )

    def blend(self) -> list[float] | None:
        """The styles' blend weights, normalised, when the parameters give one weight a style."""
        given = self.parameters.get("style_blend")
        if (
            not isinstance(given, list)
            or len(given) != len(self.styles)
            or not all(json_number(w) is not None for w in given)
        ):
            return None
        total = sum(float(w) for w in given)
        return [float(w) / total for w in given] if total > 0 else None


_NESTED = ("content", "styles", "style_cache")
_ALWAYS = ("styles", "style_cache")  # written even when empty: nst stylize's metadata has the sidecar's keys


def _input_json(record: InputRecord, with_size: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": record.uri, "sha256": record.sha256}
    if with_size and record.size is not None:
        out["size"] = record.size
    return out


def json_text(value: Any, default: str = "") -> str:
    """A JSON value where text belongs: itself when it is text, else ``default``."""
    return value if isinstance(value, str) else default


def json_number(value: Any) -> float | None:
    """A JSON value where a number belongs: it as a float (never a bool), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
