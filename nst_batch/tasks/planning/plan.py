"""Expand a manifest into the batch's work: pairs with their output names and merged parameters.

Small, JSON-friendly values only: these travel between Prefect tasks and Dask workers.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

from nst_batch.core import StyleConfig
from nst_batch.core.config import show
from nst_batch.tasks.errors import StorageError
from nst_batch.tasks.output.layout import RESERVED_NAMES, OutputLayout
from nst_batch.tasks.output.storage import basename, climbs_out, has_glob, parent, resolve, storage_for, uri_problem
from nst_batch.tasks.planning.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SWEEP_POINTS,
    Manifest,
    ManifestError,
    ManifestProblem,
    PairEntry,
    parse_manifest,
    parse_manifest_leniently,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class StyleRef:
    name: str
    uri: str


@dataclass(frozen=True)
class PairJob:
    name: str  # output name without extension, unique in the batch
    content_uri: str
    styles: tuple[StyleRef, ...]
    config: StyleConfig  # the merged, validated parameters (pairs with equal ones share one object)
    origin: str = ""  # the manifest field it comes from (contents.0, pairs.3), for messages
    # A point of a sweep: the swept parameters' values here (in the sweep's order), and the name
    # the pair would have without the sweep, which every point of it shares. Empty: no sweep.
    sweep: dict[str, Any] = field(default_factory=dict)
    sweep_of: str = ""

    def row(self, settings: BatchSettings) -> dict[str, Any]:
        """What the summary and the gallery say of this pair, whatever became of it."""
        blend = self.config.blend_weights(len(self.styles))
        row = {"name": self.name, "content": self.content_uri, "styles": [s.uri for s in self.styles],
               "style_names": [s.name for s in self.styles], "blend": [round(w, 4) for w in blend],
               "output": settings.output_uri(self.name), "sidecar": settings.sidecar_uri(self.name)}
        if self.sweep:
            row.update({"sweep": self.sweep, "sweep_of": self.sweep_of})
        return row


@dataclass(frozen=True)
class BatchSettings:
    output_root: str
    format: str
    weights: str
    weights_preprocessing: str | None
    device: str
    max_pixels: int
    quality: int
    run_id: str = ""  # the flow run's id (set by the flow): each sidecar records the run that wrote it
    verify: bool = False  # a skip hashes the output against its sidecar (else: size and header only)
    threads: int = 0  # compute threads per pair; 0 = auto (nst_batch.tasks.pair.threads)
    keep_earlier: bool = False  # a pair redone with other parameters or inputs keeps its previous files under earlier/

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.output_root, self.format)

    def output_uri(self, name: str) -> str:
        return self.layout.output(name)

    def sidecar_uri(self, name: str) -> str:
        return self.layout.sidecar(name)


@dataclass(frozen=True)
class Plan:
    source: str
    settings: BatchSettings
    pairs: tuple[PairJob, ...]
    styles: dict[str, str] = field(default_factory=dict)  # name -> URI

    def describe(self) -> dict[str, Any]:
        """The plan as JSON: each pair with every parameter it runs with (the defaults included)."""
        full: dict[int, dict[str, Any]] = {}  # pairs share their config: each is written out once
        for p in self.pairs:
            if id(p.config) not in full:
                full[id(p.config)] = p.config.to_json()
        return {
            "manifest": self.source,
            "output": self.settings.output_root,
            "styles": self.styles,
            "pairs": [{"name": p.name, "output": self.settings.output_uri(p.name), "content": p.content_uri,
                       "styles": [s.name for s in p.styles], "parameters": full[id(p.config)]} for p in self.pairs],
        }


def load_plan(manifest_uri: str, output_override: str | None = None) -> Plan:
    """Read, validate and expand a manifest (a path or an s3:// URI)."""
    problem = uri_problem(manifest_uri)
    if problem:
        raise ManifestError(manifest_uri, [ManifestProblem("", problem)])
    return expand(parse_manifest(_read_manifest(manifest_uri), manifest_uri), manifest_uri, output_override)


def _read_manifest(manifest_uri: str) -> str:
    try:
        # Read no more than the limit and a byte: a huge file is refused without reading all of it.
        return storage_for(manifest_uri).read_head(manifest_uri, MAX_MANIFEST_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(manifest_uri, [ManifestProblem("", "manifest not found")]) from None
    except UnicodeDecodeError:
        raise ManifestError(manifest_uri, [ManifestProblem("", "the manifest is not UTF-8 text")]) from None
    except StorageError as exc:  # a folder, a FIFO, an unreachable S3 server
        raise ManifestError(manifest_uri, [ManifestProblem("", f"cannot read the manifest: {exc}")]) from None


def expand(manifest: Manifest, source: str, output_override: str | None = None, collect: list[ManifestProblem] | None = None) -> Plan:
    """The plan of ``manifest``; raises :class:`ManifestError` with every problem found, or with
    ``collect`` appends them there and returns the plan of the pairs that did expand."""
    base = parent(source)
    problems = _uri_problems(manifest, output_override, base)
    if problems:  # nothing below can be trusted with a mis-parsed URI (it would become a local path)
        if collect is not None:
            collect += problems
            return Plan(source, BatchSettings(output_override or manifest.output, manifest.format, manifest.weights,
                                              manifest.weights_preprocessing, manifest.device, manifest.max_pixels, manifest.quality,
                                              threads=manifest.threads), ())
        raise ManifestError(source, problems)
    output_root = resolve(base, output_override or manifest.output)
    weights = manifest.weights if manifest.weights in ("caffe", "torchvision") else resolve(base, manifest.weights)
    settings = BatchSettings(output_root, manifest.format, weights, manifest.weights_preprocessing, manifest.device,
                             manifest.max_pixels, manifest.quality, threads=manifest.threads, keep_earlier=manifest.keep_earlier)
    styles = {name: resolve(base, manifest.style_path(name)) for name in manifest.styles}
    entries = _pair_entries(manifest, base, problems, output_root)
    pairs: list[PairJob] = []
    shared: dict[Any, Any] = {}  # one object for equal parameters and style lists: 100,000 pairs share a few
    # The manifest's levels of parameters, read once: a million pairs share them.
    defaults = (manifest.defaults.given(), manifest.defaults.sweep or {})
    style_levels = {style: (manifest.style_params(style), manifest.style_sweep(style)) for style in manifest.styles}
    for path, content_uri, style_names, overrides, name in entries:
        unknown = [s for s in style_names if s not in styles]
        if unknown:
            problems.append(ManifestProblem(path + ".style", f"unknown style {', '.join(map(repr, unknown))}; known: {', '.join(styles)}"))
            continue
        levels = [defaults, *(style_levels[style] for style in style_names)]
        levels += [({k: v for k, v in overrides.items() if k != "sweep"}, overrides.get("sweep") or {})]
        params, sweep = _merged(levels)
        points = math.prod(len(v) for v in sweep.values())
        if points > MAX_SWEEP_POINTS:
            sizes = " x ".join(f"{len(v)} {k}" for k, v in sweep.items())
            problems.append(ManifestProblem(path, f"the sweep makes {points} outputs of each pair ({sizes}), over the limit of "
                                                  f"{MAX_SWEEP_POINTS}: sweep fewer values, or split it over pairs"))
            continue
        job_name = name or output_name(content_uri, style_names)
        refs = shared.setdefault(("styles", *style_names), tuple(StyleRef(s, styles[s]) for s in style_names))
        for point in _points(sweep):
            try:
                checked = _checked_params(shared, {**params, **point}, len(style_names))
            except (ValueError, TypeError) as exc:
                problems.append(ManifestProblem(path, f"{str(exc)}{_at(point)}"))
                continue
            pairs.append(PairJob(sweep_name(job_name, point), content_uri, refs, checked, path, _jsonable(point), job_name if point else ""))
    pairs = _distinct_names(pairs, {p.name for p in pairs if p.origin.startswith("pairs.") and _explicit(manifest, p)})
    problems += _duplicate_names(pairs) + _reserved_names(pairs)
    if problems and collect is None:
        raise ManifestError(source, problems)
    if collect is not None:
        collect += problems
    return Plan(source, settings, tuple(pairs), styles)


def plan_with_problems(manifest_uri: str, output_override: str | None = None) -> tuple[Plan | None, list[ManifestProblem]]:
    """``nst validate``'s one pass: every problem of the text, the schema, the names and the globs,
    and the plan of what is left (for its files to be checked too)."""
    problem = uri_problem(manifest_uri)
    if problem:
        return None, [ManifestProblem("", problem)]
    try:
        text = _read_manifest(manifest_uri)
    except ManifestError as exc:
        return None, list(exc.problems)
    manifest, problems = parse_manifest_leniently(text, manifest_uri)
    if manifest is None:
        return None, problems
    found: list[ManifestProblem] = []
    plan = expand(manifest, manifest_uri, output_override, collect=found)
    named = {p.path for p in problems}  # an unknown style was named by the parse already, with its line
    return plan, problems + [p for p in found if not (p.path.endswith(".style") and p.path in named)]


def _merged(levels: list[tuple[dict[str, Any], dict[str, list[Any]]]]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Parameters and sweep from the least specific level (defaults) to the most (the pair): a
    value given at a level replaces a sweep of it from the levels before, and a sweep a value."""
    params: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    for given, swept in levels:
        params.update(given)
        for key in given:
            sweep.pop(key, None)
        sweep.update(swept)
        for key in swept:
            params.pop(key, None)
    return params, sweep


def _points(sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values, the first parameter varying slowest; one empty
    point without a sweep."""
    return [dict(zip(sweep, values, strict=True)) for values in itertools.product(*sweep.values())]


def sweep_name(name: str, point: dict[str, Any]) -> str:
    """A sweep point's output name: the pair's, then each swept parameter and its value,
    ``photo__monet__style_weight-30__style_scale-0.5``; the pair's own name without a sweep."""
    if not point:
        return name
    return safe_name("__".join([name, *(f"{k}-{_label(k, v)}" for k, v in point.items())]), limit=200)


def _label(key: str, value: Any) -> str:
    if key == "scales" and not value:
        return "auto"
    return show(tuple(value) if isinstance(value, list) else value).replace(", ", ",")


def _at(point: dict[str, Any]) -> str:
    return f" (at {', '.join(f'{k}={_label(k, v)}' for k, v in point.items())})" if point else ""


def _uri_problems(manifest: Manifest, output_override: str | None, base: str = "") -> list[ManifestProblem]:
    """Every URI of the manifest that is malformed (``s3:/b``, ``S3://``, a NUL byte, ...), and
    every relative path of a manifest on S3 that climbs out of its bucket with ``..``."""
    where = [("output", output_override or manifest.output)]
    if manifest.weights not in ("caffe", "torchvision"):
        where.append(("weights", manifest.weights))
    where += [(f"styles.{name}", manifest.style_path(name)) for name in manifest.styles]
    where += [(f"contents.{i}", entry) for i, entry in enumerate(manifest.contents)]
    if manifest.pairs != "all":
        where += [(f"pairs.{i}.content", pair.content) for i, pair in enumerate(manifest.pairs)]  # type: ignore[union-attr]
    return [ManifestProblem(field, problem) for field, uri in where if (problem := uri_problem(uri) or climbs_out(base, uri))]


def _explicit(manifest: Manifest, pair: PairJob) -> bool:
    """Whether the pair's name was given in the manifest (then a clash is the user's to fix)."""
    index = int(pair.origin.split(".")[1])
    return manifest.pairs != "all" and manifest.pairs[index].name is not None  # type: ignore[index]


def _pair_entries(manifest: Manifest, base: str, problems: list[ManifestProblem],
                  output_root: str) -> list[tuple[str, str, list[str], dict[str, Any], str | None]]:
    """(field path, content URI, style names, per-pair parameters, output name) for every pair."""
    if manifest.pairs == "all":
        if not manifest.contents:
            problems.append(ManifestProblem("contents", "no contents: list images, globs or prefixes, or give explicit pairs"))
        out = []
        for i, entry in enumerate(manifest.contents):
            for uri in _expand_contents(resolve(base, entry), f"contents.{i}", problems, output_root):
                out += [(f"contents.{i}", uri, [style], {}, None) for style in manifest.styles]
        return out
    entries: list[tuple[str, str, list[str], dict[str, Any], str | None]] = []
    for i, pair in enumerate(manifest.pairs):
        assert isinstance(pair, PairEntry)
        names = [pair.style] if isinstance(pair.style, str) else list(pair.style)
        overrides = {k: v for k, v in pair.given().items() if k not in ("content", "style", "name")}
        if pair.sweep:
            overrides["sweep"] = pair.sweep
        if pair.name is not None and safe_name(pair.name) != pair.name:
            problems.append(ManifestProblem(f"pairs.{i}.name", f"{pair.name!r} is not a safe file name (letters, digits, . _ + - only)"))
            continue
        for uri in _expand_contents(resolve(base, pair.content), f"pairs.{i}.content", problems, output_root):
            entries.append((f"pairs.{i}", uri, names, overrides, pair.name))
    return entries


def _expand_contents(uri: str, path: str, problems: list[ManifestProblem], output_root: str) -> list[str]:
    """A file, a glob, a folder, an s3:// object or an s3:// prefix -> image URIs.

    An entry names a file when such a file exists (``photo[1].png`` is then that file, not a
    pattern), else a folder or prefix, else a pattern. Listings leave out everything under the
    output root (the run's own outputs, thumbnails and cache), so a run never stylizes its own
    outputs; a file under the output root named on its own is refused.
    """
    storage = storage_for(uri)
    try:
        if _under(uri, output_root):
            problems.append(ManifestProblem(path, f"{uri} is inside the output root {output_root}: outputs cannot be inputs"))
            return []
        kind = storage.entry_kind(uri, uri.lower().endswith(IMAGE_EXTENSIONS))
        if kind == "file":
            return [uri]
        if has_glob(uri):
            return _listed(storage.glob(uri), output_root, path, f"{uri} matches no images", problems)
        if kind == "folder":
            return _listed(storage.list(uri), output_root, path, f"no images {'in folder' if storage.local_path(uri) else 'under'} {uri}", problems)
    except Exception as exc:  # storage faults while listing
        problems.append(ManifestProblem(path, f"cannot list {uri}: {exc}"))
        return []
    return [uri]  # a single file: if it is missing or bad, that pair fails on its own (nst validate says so first)


def _under(uri: str, root: str) -> bool:
    return uri.startswith(root.rstrip("/") + "/")


def _listed(found: list[str], output_root: str, path: str, none: str, problems: list[ManifestProblem]) -> list[str]:
    images = [u for u in found if u.lower().endswith(IMAGE_EXTENSIONS) and not _under(u, output_root)]
    if not images:
        problems.append(ManifestProblem(path, none))
    return images


def safe_name(text: str, limit: int = 120) -> str:
    """A file name that cannot escape the output root: letters and digits of any script, ``._+-``,
    no leading dot, bounded (S3 keys and today's file systems take UTF-8 names). NFC, so the same
    name typed on macOS (NFD) and Linux is one name."""
    cleaned = re.sub(r"[^\w.+-]+", "_", unicodedata.normalize("NFC", text)).strip("._") or "image"
    if len(cleaned) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: limit - 9]}-{digest}"
    return cleaned


def output_name(content_uri: str, style_names: list[str]) -> str:
    stem = basename(content_uri)
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return safe_name(f"{stem}__{'+'.join(style_names)}")


def _distinct_names(pairs: list[PairJob], explicit: set[str]) -> list[PairJob]:
    """Generated names that collide (``my photo`` and ``my_photo``, ``a.jpg`` and ``a.png``) or
    take a reserved name get a short hash of their content's URI; explicit names are kept as the
    user wrote them (a clash among those is reported)."""
    seen: dict[str, int] = {}
    for pair in pairs:
        seen[pair.name.lower()] = seen.get(pair.name.lower(), 0) + 1
    out = []
    for pair in pairs:
        clash = seen[pair.name.lower()] > 1 or pair.name.lower() in RESERVED_NAMES
        if clash and pair.name not in explicit:
            digest = hashlib.sha256(pair.content_uri.encode()).hexdigest()[:8]
            pair = replace(pair, name=safe_name(f"{pair.name}-{digest}"))
        out.append(pair)
    return out


def _duplicate_names(pairs: list[PairJob]) -> list[ManifestProblem]:
    seen: dict[str, PairJob] = {}
    problems = []
    for pair in pairs:
        key = pair.name.lower()
        if key in seen:
            other = seen[key]
            problems.append(ManifestProblem(pair.origin or "pairs", f"two pairs would write {pair.name!r}: {other.content_uri} and "
                                            f"{pair.content_uri} (give them distinct `name`s)"))
        seen[key] = pair
    return problems


def _reserved_names(pairs: list[PairJob]) -> list[ManifestProblem]:
    return [ManifestProblem(p.origin or "pairs", f"name {p.name!r} is reserved for the run's own files ({', '.join(sorted(RESERVED_NAMES))})")
            for p in pairs if p.name.lower() in RESERVED_NAMES]


def _checked_params(shared: dict[Any, Any], values: dict[str, Any], styles: int) -> StyleConfig:
    """The pair's parameters as a :class:`StyleConfig`, validated for ``styles`` styles: the same
    object for every pair with equal values. A million pairs share a few sets of values, so each
    set becomes a config once (validating each pair's was 60 % of planning them)."""
    key = ("params", styles, repr(sorted(values.items())))
    checked = shared.get(key)
    if checked is None:
        cfg = StyleConfig.from_json(values)
        cfg.blend_weights(styles)
        checked = shared[key] = shared.setdefault(cfg, cfg)
    return checked


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
