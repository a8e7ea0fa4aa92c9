"""Expand a manifest into the batch's work: pairs with their output names and merged parameters.

Small, JSON-friendly values only: these travel between Prefect tasks and Dask workers.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import posixpath
import re
import unicodedata
from dataclasses import replace
from typing import Any

from nst_batch.core import StyleConfig
from nst_batch.core.config import show
from nst_batch.tasks.errors import Problem, StorageError
from nst_batch.tasks.output.layout import RESERVED_NAMES
from nst_batch.tasks.output.storage import (
    basename,
    climbs_out,
    has_glob,
    has_scheme,
    parent,
    resolve,
    storage_for,
    uri_problem,
)
from nst_batch.tasks.planning.formats import NOT_TAKEN, image_extensions
from nst_batch.tasks.planning.jobs import BatchSettings, MaskRef, PairJob, Plan, StyleRef
from nst_batch.tasks.planning.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SWEEP_POINTS,
    Manifest,
    ManifestError,
    ManifestProblem,
    PairEntry,
    excerpt,
    parse_manifest,
    parse_manifest_leniently,
    printable,
)
from nst_batch.tasks.planning.masks import mask_styles_problems

# An output's name (without its extension) in UTF-8 bytes at most: file systems count a name's
# bytes (255 on ext4, APFS, NTFS counts UTF-16 units), and the longest file a pair writes is
# ``.<name>.<ext>.<pid>-<start>.<random>.part`` (about 35 more) or earlier/<name>.<stamp>.<ext> (21).
MAX_NAME_BYTES = 180


def load_plan(manifest_uri: str, output: str | None = None) -> Plan:
    """Read, validate and expand a manifest (a path or an s3:// URI)."""
    problem = uri_problem(manifest_uri)
    if problem:
        raise ManifestError(manifest_uri, [ManifestProblem("", problem)])
    return expand(parse_manifest(_read_manifest(manifest_uri), manifest_uri), manifest_uri, output)


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


def expand(
    manifest: Manifest, source: str, output: str | None = None, collect: list[ManifestProblem] | None = None
) -> Plan:
    """The plan of ``manifest``; raises :class:`ManifestError` with every problem found, or with
    ``collect`` appends them there and returns the plan of the pairs that did expand."""
    base = parent(source)
    problems = _uri_problems(manifest, output, base)
    if problems:  # nothing below can be trusted with a mis-parsed URI (it would become a local path)
        if collect is not None:
            collect += problems
            return Plan(source, BatchSettings(output or manifest.output, manifest.format, manifest.runtime()), ())
        raise ManifestError(source, problems)
    output_root = command_line_path(output) if output else resolve(base, manifest.output)
    weights = manifest.weights if manifest.weights in ("caffe", "torchvision") else resolve(base, manifest.weights)
    settings = BatchSettings(
        output_root,
        manifest.format,
        replace(manifest.runtime(), weights=weights),
        keep_earlier=manifest.keep_earlier,
        manifest=command_line_path(source),
    )  # absolute: `m.yaml` and `./team/m.yaml` are one manifest
    styles = {name: resolve(base, manifest.style_path(name)) for name in manifest.styles}
    notes: list[ManifestProblem] = []
    entries = _once(_pair_entries(manifest, base, problems, output_root, notes), notes)
    pairs: list[PairJob] = []
    shared: dict[Any, Any] = {}  # one object for equal parameters and style lists: 100,000 pairs share a few
    # The manifest's levels of parameters, read once: a million pairs share them.
    defaults = (manifest.defaults.given(), manifest.defaults.sweep or {})
    style_levels = {style: (manifest.style_params(style), manifest.style_sweep(style)) for style in manifest.styles}
    for path, content_uri, style_names, overrides, name, mask in entries:
        unknown = [s for s in style_names if s not in styles]
        if unknown:
            problems.append(
                ManifestProblem(
                    path + ".style", f"unknown style {', '.join(map(repr, unknown))}; known: {', '.join(styles)}"
                )
            )
            continue
        levels = [defaults, *(style_levels[style] for style in style_names)]
        levels += [({k: v for k, v in overrides.items() if k != "sweep"}, overrides.get("sweep") or {})]
        params, sweep = _merged(levels)
        points = math.prod(len(v) for v in sweep.values())
        if points > MAX_SWEEP_POINTS:
            sizes = " x ".join(f"{len(v)} {k}" for k, v in sweep.items())
            problems.append(
                ManifestProblem(
                    path,
                    f"the sweep makes {points} outputs of each pair ({sizes}), over the limit of "
                    f"{MAX_SWEEP_POINTS}: sweep fewer values, or split it over pairs",
                )
            )
            continue
        job_name = name or output_name(content_uri, style_names)
        refs = shared.setdefault(("styles", *style_names), tuple(StyleRef(s, styles[s]) for s in style_names))
        for point in _points(sweep):
            try:
                checked = _checked_params(shared, {**params, **point}, len(style_names))
            except (ValueError, TypeError) as exc:
                problems.append(ManifestProblem(path, f"{str(exc)}{_at(point)}"))
                continue
            pairs.append(
                PairJob(
                    sweep_name(job_name, point),
                    content_uri,
                    refs,
                    checked,
                    path,
                    _jsonable(point),
                    job_name if point else "",
                    named=name is not None,
                    mask=mask,
                )
            )
    pairs = _distinct_names(pairs, {p.name for p in pairs if p.named})
    problems += _duplicate_names(pairs) + _reserved_names(pairs)
    if problems and collect is None:
        raise ManifestError(source, problems)
    if collect is not None:
        collect += problems
    return Plan(source, settings, tuple(pairs), styles, tuple(notes))


def command_line_path(path: str) -> str:
    """A path given on the command line (or as a flow run's parameter): a URI as it is, a local
    path against the working directory, as a shell user expects (not against the manifest's
    folder: ``nst run s3://b/m.yaml --output /data/out`` writes to the local /data/out)."""
    return path if has_scheme(path) else os.path.abspath(os.path.expanduser(path))


def plan_with_problems(manifest_uri: str, output: str | None = None) -> tuple[Plan | None, list[Problem]]:
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
    plan = expand(manifest, manifest_uri, output, collect=found)
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
    return safe_name("__".join([name, *(f"{k}-{_label(k, v)}" for k, v in point.items())]))


def _label(key: str, value: Any) -> str:
    if key == "scales" and not value:
        return "auto"
    return show(tuple(value) if isinstance(value, list) else value).replace(", ", ",")


def _at(point: dict[str, Any]) -> str:
    return f" (at {', '.join(f'{k}={_label(k, v)}' for k, v in point.items())})" if point else ""


def _uri_problems(manifest: Manifest, output: str | None, base: str = "") -> list[ManifestProblem]:
    """Every URI of the manifest that is malformed (``s3:/b``, ``S3://``, a NUL byte, ...), and
    every relative path of a manifest on S3 that climbs out of its bucket with ``..``."""
    where = [("output", output or manifest.output)]
    if manifest.weights not in ("caffe", "torchvision"):
        where.append(("weights", manifest.weights))
    where += [(f"styles.{name}", manifest.style_path(name)) for name in manifest.styles]
    where += [(f"contents.{i}", entry) for i, entry in enumerate(manifest.contents)]
    if manifest.pairs != "all":
        where += [(f"pairs.{i}.content", pair.content) for i, pair in enumerate(manifest.pairs)]
    return [
        ManifestProblem(field, problem)
        for field, uri in where
        if (problem := uri_problem(uri) or climbs_out(base, uri))
    ]


_Entry = tuple[str, str, list[str], dict[str, Any], str | None, MaskRef | None]


def _once(entries: list[_Entry], notes: list[ManifestProblem]) -> list[_Entry]:
    """The entries without repeats: a photo listed on its own and matched by a glob too (with the
    same styles and parameters) is one pair, and a note says so."""
    seen: dict[str, str] = {}
    out = []
    for entry in entries:
        path, uri, styles, overrides, name, mask = entry
        key = repr((uri, styles, sorted(overrides.items()), name, mask))
        if key in seen:
            notes.append(ManifestProblem(path, f"{uri} with {'+'.join(styles)} is listed by {seen[key]} too: one pair"))
            continue
        seen[key] = path
        out.append(entry)
    return out


def _pair_entries(
    manifest: Manifest, base: str, problems: list[ManifestProblem], output_root: str, notes: list[ManifestProblem]
) -> list[_Entry]:
    """(field path, content URI, style names, per-pair parameters, output name) for every pair."""
    if manifest.pairs == "all":
        if not manifest.contents:
            problems.append(
                ManifestProblem("contents", "no contents: list images, globs or prefixes, or give explicit pairs")
            )
        out: list[_Entry] = []
        for i, entry in enumerate(manifest.contents):
            for uri in _expand_contents(resolve(base, entry), f"contents.{i}", problems, output_root, notes):
                out += [(f"contents.{i}", uri, [style], {}, None, None) for style in manifest.styles]
        return out
    entries: list[_Entry] = []
    for i, pair in enumerate(manifest.pairs):
        assert isinstance(pair, PairEntry)
        names = [pair.style] if isinstance(pair.style, str) else list(pair.style)
        overrides = {
            k: v for k, v in pair.given().items() if k not in ("content", "style", "name", "mask", "mask_styles")
        }
        if (pair.mask is None) != (pair.mask_styles is None):
            problems.append(
                ManifestProblem(f"pairs.{i}", "mask and mask_styles go together: the image, and what its colours take")
            )
            continue
        mask_problems = mask_styles_problems(pair.mask_styles, names) if pair.mask_styles is not None else []
        if mask_problems:
            problems += [ManifestProblem(f"pairs.{i}.mask_styles", m) for m in mask_problems]
            continue
        if pair.sweep:
            overrides["sweep"] = pair.sweep
        if pair.name is not None and len(pair.name.encode("utf-8", "replace")) > MAX_NAME_BYTES:
            problems.append(
                ManifestProblem(
                    f"pairs.{i}.name",
                    f"{excerpt(pair.name)} is {len(pair.name.encode('utf-8', 'replace'))} "
                    f"bytes in UTF-8, over the {MAX_NAME_BYTES} a name may take",
                )
            )
            continue
        if pair.name is not None and safe_name(pair.name) != pair.name:
            problems.append(
                ManifestProblem(
                    f"pairs.{i}.name", f"{pair.name!r} is not a safe file name (letters, digits, . _ + - only)"
                )
            )
            continue
        for uri in _expand_contents(resolve(base, pair.content), f"pairs.{i}.content", problems, output_root, notes):
            mask = None
            if pair.mask is not None and pair.mask_styles is not None:
                mask = MaskRef(resolve(base, pair.mask.replace("{stem}", stem(uri))), tuple(pair.mask_styles.items()))
            entries.append((f"pairs.{i}", uri, names, overrides, pair.name, mask))
    return entries


def _expand_contents(
    uri: str, path: str, problems: list[ManifestProblem], output_root: str, notes: list[ManifestProblem]
) -> list[str]:
    """A file, a glob, a folder, an s3:// object or an s3:// prefix -> image URIs.

    An entry names a file when such a file exists (``photo[1].png`` is then that file, not a
    pattern), else a folder or prefix, else a pattern. Listings leave out everything under the
    output root (the run's own outputs, thumbnails and cache), so a run never stylizes its own
    outputs; a file under the output root named on its own is refused.
    """
    storage = storage_for(uri)
    try:
        if _under(uri, output_root):
            problems.append(
                ManifestProblem(path, f"{uri} is inside the output root {output_root}: outputs cannot be inputs")
            )
            return []
        if not_utf8(uri):
            problems.append(ManifestProblem(path, f"{shown_name(uri)}: {NOT_UTF8}"))
            return []
        kind = storage.entry_kind(uri, uri.lower().endswith(image_extensions()))
        if kind == "file":
            return [uri]
        if has_glob(uri):
            return _listed(storage.glob(uri), output_root, path, f"{uri} matches no images", problems, notes)
        if kind == "folder":
            where = f"{'in folder' if storage.local_path(uri) else 'under'} {uri}"
            return _listed(storage.list(uri), output_root, path, f"no images {where}", problems, notes)
    except Exception as exc:  # storage faults while listing; a symlink loop
        problems.append(ManifestProblem(path, f"cannot list {uri}: {' '.join(str(exc).split())}"))
        return []
    return [uri]  # a single file: if it is missing or bad, that pair fails on its own (nst validate says so first)


NOT_UTF8 = (
    "the file name is not valid UTF-8 (copied from another system?): rename it, e.g. convmv -f latin1 -t utf8 --notest"
)


def not_utf8(uri: str) -> bool:
    """A local name that is not UTF-8 reaches Python as lone surrogates (PEP 383): it opens, but
    no sidecar, summary or web page can hold it."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def shown_name(uri: str) -> str:
    """A name for a message: undecodable bytes as ``\\xe9``, control characters (an ANSI escape
    in a file name) escaped, never sent raw to a terminal."""
    return printable(os.fsencode(uri).decode("utf-8", "backslashreplace") if not_utf8(uri) else uri)


def _under(uri: str, root: str) -> bool:
    return uri.startswith(root.rstrip("/") + "/")


def _listed(
    found: list[str],
    output_root: str,
    path: str,
    none: str,
    problems: list[ManifestProblem],
    notes: list[ManifestProblem],
) -> list[str]:
    """The images of a listing (not those under the output root); every other file is counted,
    one note per kind with why it is not taken and the first few names: nothing left out in silence."""
    extensions = image_extensions()
    images: list[str] = []
    skipped: dict[tuple[str, str], list[str]] = {}  # (extension, or "name"; why) -> URIs
    for uri in found:
        if _under(uri, output_root):
            continue
        name = basename(uri)
        if not_utf8(uri):
            skipped.setdefault(("name", NOT_UTF8), []).append(uri)
        elif name.lower().endswith(extensions):
            images.append(uri)
        elif not name.startswith("."):  # hidden files (.DS_Store, ._photo.jpg) are the system's, not photos
            ext = posixpath.splitext(name)[1].lower()
            skipped.setdefault((ext, NOT_TAKEN.get(ext, "not an image file")), []).append(uri)
    for (ext, why), uris in skipped.items():
        kind = (
            "with a name that is not UTF-8" if ext == "name" else f"{ext} file" if ext else "file without an extension"
        )
        plural = "s" if len(uris) > 1 and ext not in ("name", "") else ""
        names = ", ".join(shown_name(basename(u)) for u in uris[:3]) + (", ..." if len(uris) > 3 else "")
        count = (
            f"{len(uris)} {kind}{plural}" if ext != "name" else f"{len(uris)} file{'s' if len(uris) > 1 else ''} {kind}"
        )
        notes.append(ManifestProblem(path, f"{count} skipped ({names}): {why}"))
    if not images:
        problems.append(ManifestProblem(path, none))
    return images


def safe_name(text: str, limit: int = MAX_NAME_BYTES) -> str:
    """A file name that cannot escape the output root: letters and digits of any script, ``._+-``,
    no leading dot, at most ``limit`` bytes in UTF-8 (S3 keys and today's file systems take UTF-8
    names and count bytes: 60 CJK characters are 180). NFC, so the same name typed on macOS (NFD)
    and Linux is one name. A longer name is cut and ends with a hash of the whole."""
    cleaned = re.sub(r"[^\w.+-]+", "_", unicodedata.normalize("NFC", text)).strip("._") or "image"
    if len(cleaned.encode()) > limit:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cut = cleaned.encode()[: limit - 9].decode("utf-8", "ignore")  # never half a character
        cleaned = f"{cut}-{digest}"
    return cleaned


def stem(uri: str) -> str:
    """A file's name without its extension: ``photos/a.b.jpg`` -> ``a.b``."""
    name = basename(uri)
    return name.rsplit(".", 1)[0] if "." in name else name


def output_name(content_uri: str, style_names: list[str]) -> str:
    return safe_name(f"{stem(content_uri)}__{'+'.join(style_names)}")


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
            problems.append(
                ManifestProblem(
                    pair.origin or "pairs",
                    f"two pairs would write {pair.name!r}: {other.content_uri} and "
                    f"{pair.content_uri} (give them distinct `name`s)",
                )
            )
        seen[key] = pair
    return problems


def _reserved_names(pairs: list[PairJob]) -> list[ManifestProblem]:
    return [
        ManifestProblem(
            p.origin or "pairs",
            f"name {p.name!r} is reserved for the run's own files ({', '.join(sorted(RESERVED_NAMES))})",
        )
        for p in pairs
        if p.name.lower() in RESERVED_NAMES
    ]


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
