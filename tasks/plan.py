"""Expand a manifest into the batch's work: pairs with their output names and merged parameters.

Small, JSON-friendly values only: these travel between Prefect tasks and Dask workers.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nst_core import StyleConfig
from tasks.manifest import Manifest, ManifestError, ManifestProblem, PairEntry, parse_manifest
from tasks.storage import is_s3, join, split_s3, storage_for

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
CACHE_DIR = ".cache/style-targets"
SUMMARY_NAME = "summary.json"
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class StyleRef:
    name: str
    uri: str


@dataclass(frozen=True)
class PairJob:
    name: str  # output name without extension, unique in the batch
    content_uri: str
    styles: tuple[StyleRef, ...]
    params: dict[str, Any]  # StyleConfig keyword arguments (the merged, validated values)
    origin: str = ""  # the manifest field it comes from (contents.0, pairs.3), for messages

    def config(self) -> StyleConfig:
        return StyleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.params.items()})

    def row(self, settings: BatchSettings) -> dict[str, Any]:
        """What the summary and the gallery say of this pair, whatever became of it."""
        blend = self.config().blend_weights(len(self.styles))
        return {"name": self.name, "content": self.content_uri, "styles": [s.uri for s in self.styles],
                "style_names": [s.name for s in self.styles], "blend": [round(w, 4) for w in blend],
                "output": settings.output_uri(self.name), "sidecar": settings.sidecar_uri(self.name)}


@dataclass(frozen=True)
class BatchSettings:
    output_root: str
    format: str
    weights: str
    weights_preprocessing: str | None
    device: str
    max_pixels: int
    quality: int

    @property
    def cache_root(self) -> str:
        return join(self.output_root, CACHE_DIR)

    def output_uri(self, name: str) -> str:
        return join(self.output_root, f"{name}.{self.format}")

    def sidecar_uri(self, name: str) -> str:
        return join(self.output_root, f"{name}.json")


@dataclass(frozen=True)
class Plan:
    source: str
    settings: BatchSettings
    pairs: tuple[PairJob, ...]
    styles: dict[str, str] = field(default_factory=dict)  # name -> URI

    def describe(self) -> dict[str, Any]:
        return {
            "manifest": self.source,
            "output": self.settings.output_root,
            "styles": self.styles,
            "pairs": [{"name": p.name, "output": self.settings.output_uri(p.name), "content": p.content_uri,
                       "styles": [s.name for s in p.styles], "parameters": p.params} for p in self.pairs],
        }


def load_plan(manifest_uri: str, output_override: str | None = None) -> Plan:
    """Read, validate and expand a manifest (a path or an s3:// URI)."""
    storage = storage_for(manifest_uri)
    try:
        text = storage.read_bytes(manifest_uri).decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(manifest_uri, [ManifestProblem("", "manifest not found")]) from None
    except UnicodeDecodeError:
        raise ManifestError(manifest_uri, [ManifestProblem("", "the manifest is not UTF-8 text")]) from None
    return expand(parse_manifest(text, manifest_uri), manifest_uri, output_override)


def base_of(manifest_uri: str) -> str:
    """The folder relative paths in a manifest resolve against."""
    if is_s3(manifest_uri):
        return manifest_uri.rsplit("/", 1)[0]
    return str(Path(manifest_uri).resolve().parent)


def resolve(base: str, path: str) -> str:
    if is_s3(path) or (not is_s3(base) and Path(path).expanduser().is_absolute()):
        return str(Path(path).expanduser()) if not is_s3(path) else path
    if is_s3(base):
        bucket, key = split_s3(base + "/")
        return f"s3://{bucket}/{posixpath.normpath(posixpath.join(key, path))}"
    return str(Path(base, path).resolve())


def expand(manifest: Manifest, source: str, output_override: str | None = None) -> Plan:
    base = base_of(source)
    problems: list[ManifestProblem] = []
    output_root = output_override or manifest.output
    output_root = output_root if is_s3(output_root) else resolve(base, output_root)
    weights = manifest.weights if manifest.weights in ("caffe", "torchvision") else resolve(base, manifest.weights)
    settings = BatchSettings(output_root, manifest.format, weights, manifest.weights_preprocessing, manifest.device,
                             manifest.max_pixels, manifest.quality)
    styles = {name: resolve(base, manifest.style_path(name)) for name in manifest.styles}
    entries = _pair_entries(manifest, base, problems)
    pairs: list[PairJob] = []
    for path, content_uri, style_names, overrides, name in entries:
        unknown = [s for s in style_names if s not in styles]
        if unknown:
            problems.append(ManifestProblem(path + ".style", f"unknown style {', '.join(map(repr, unknown))}; known: {', '.join(styles)}"))
            continue
        params = manifest.defaults.given()
        for style in style_names:
            params.update(manifest.style_params(style))
        params.update(overrides)
        try:
            cfg = StyleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
            cfg.blend_weights(len(style_names))
        except (ValueError, TypeError) as exc:
            problems.append(ManifestProblem(path, str(exc)))
            continue
        job_name = name or output_name(content_uri, style_names)
        pairs.append(PairJob(job_name, content_uri, tuple(StyleRef(s, styles[s]) for s in style_names), _jsonable(asdict(cfg)), path))
    problems += _duplicate_names(pairs)
    if problems:
        raise ManifestError(source, problems)
    return Plan(source, settings, tuple(pairs), styles)


def _pair_entries(manifest: Manifest, base: str, problems: list[ManifestProblem]) -> list[tuple[str, str, list[str], dict[str, Any], str | None]]:
    """(field path, content URI, style names, per-pair parameters, output name) for every pair."""
    if manifest.pairs == "all":
        if not manifest.contents:
            problems.append(ManifestProblem("contents", "no contents: list images, globs or prefixes, or give explicit pairs"))
        out = []
        for i, entry in enumerate(manifest.contents):
            for uri in _expand_contents(resolve(base, entry), f"contents.{i}", problems):
                out += [(f"contents.{i}", uri, [style], {}, None) for style in manifest.styles]
        return out
    entries: list[tuple[str, str, list[str], dict[str, Any], str | None]] = []
    for i, pair in enumerate(manifest.pairs):
        assert isinstance(pair, PairEntry)
        names = [pair.style] if isinstance(pair.style, str) else list(pair.style)
        overrides = {k: v for k, v in pair.given().items() if k not in ("content", "style", "name")}
        if pair.name is not None and safe_name(pair.name) != pair.name:
            problems.append(ManifestProblem(f"pairs.{i}.name", f"{pair.name!r} is not a safe file name (letters, digits, . _ + - only)"))
            continue
        for uri in _expand_contents(resolve(base, pair.content), f"pairs.{i}.content", problems):
            entries.append((f"pairs.{i}", uri, names, overrides, pair.name))
    return entries


def _expand_contents(uri: str, path: str, problems: list[ManifestProblem]) -> list[str]:
    """A file, a glob, a folder, an s3:// object or an s3:// prefix -> image URIs."""
    storage = storage_for(uri)
    try:
        if _GLOB_CHARS.search(uri):
            found = [u for u in storage.glob(uri) if u.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                problems.append(ManifestProblem(path, f"{uri} matches no images"))
            return found
        if is_s3(uri) and (uri.endswith("/") or not uri.lower().endswith(IMAGE_EXTENSIONS)):
            found = [u for u in storage.list(uri) if u.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                problems.append(ManifestProblem(path, f"no images under {uri}"))
            return found
        if not is_s3(uri) and Path(uri).is_dir():
            found = [u for u in storage.list(uri) if u.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                problems.append(ManifestProblem(path, f"no images in folder {uri}"))
            return found
    except Exception as exc:  # storage faults while listing
        problems.append(ManifestProblem(path, f"cannot list {uri}: {exc}"))
        return []
    return [uri]  # a single file: if it is missing or bad, that pair fails on its own


def safe_name(text: str, limit: int = 120) -> str:
    """A file name that cannot escape the output root: [A-Za-z0-9._+-], no leading dot, bounded."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "image"
    if len(cleaned) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: limit - 9]}-{digest}"
    return cleaned


def output_name(content_uri: str, style_names: list[str]) -> str:
    stem = posixpath.basename(content_uri) if is_s3(content_uri) else Path(content_uri).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return safe_name(f"{stem}__{'+'.join(style_names)}")


def _duplicate_names(pairs: list[PairJob]) -> list[ManifestProblem]:
    seen: dict[str, PairJob] = {}
    problems = []
    for pair in pairs:
        if pair.name in seen:
            other = seen[pair.name]
            problems.append(ManifestProblem("pairs", f"two pairs would write {pair.name!r}: {other.content_uri} and {pair.content_uri} "
                                            "(give them distinct `name`s in explicit pairs)"))
        seen[pair.name] = pair
    return problems


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
