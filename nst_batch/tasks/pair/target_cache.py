"""Style targets through a cache: each style's Gram matrices (or quantile tables) for a parameter set,
computed once and stored under the output root (``.cache/``, a validated entry per key), and kept on
their device for the rest of a flow run (:class:`ResidentTargets`). The flow's style task
(:func:`ensure_style_targets`) fills it; every pair reads it."""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from nst_batch.core import (
    StyleConfig,
    StyleTargets,
    TargetSpec,
    VGGFeatures,
    compute_style_targets,
    for_device,
    targets_from_bytes,
    targets_to_bytes,
)
from nst_batch.core.targets import target_spec
from nst_batch.tasks.basics import sha256_hex
from nst_batch.tasks.errors import TaskError
from nst_batch.tasks.output.layout import cache_entry_name, original_thumb
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.pair.device_pool import device_pool
from nst_batch.tasks.pair.image_files import (
    check_aspect,
    decode_image,
    read_image_bytes,
    thumbnail,
)
from nst_batch.tasks.pair.networks import get_features
from nst_batch.tasks.pair.records import CacheUse
from nst_batch.tasks.planning.jobs import BatchSettings
from nst_batch.tasks.planning.runtime import RuntimeOptions

if TYPE_CHECKING:  # PyTorch itself is imported where a pair runs (see _cpu)
    import torch

from nst_batch.tasks.pair.provenance import PIPELINE_VERSION


@dataclass(frozen=True)
class TargetsOutcome:
    targets: StyleTargets
    key: str
    cached: bool  # read from the cache, not computed here
    rejected: str = ""  # why a cache entry found under this key was not used (then recomputed)
    by_this_run: bool = True  # computed by this flow run (here, or by its style task): not a cache hit

    @property
    def hit(self) -> bool:
        """The one definition of a cache hit, for the sidecar and the summary alike: targets an
        earlier run made. Targets this run's style task made and a pair then read are not one."""
        return not self.by_this_run


# A cache entry is one JSON line naming what it holds, then the targets: read back, the line must
# name the key it was asked for and the style's sha256, and the payload must hash as it says (two
# entries swapped on disk once gave a pair the other painting's style, reported as a cache hit).
_ENTRY_MAGIC = "nst-style-targets"


def cache_entry(key: str, style_sha256: str, payload: bytes, run_id: str = "") -> bytes:
    header = {
        "magic": _ENTRY_MAGIC,
        "key": key,
        "style_sha256": style_sha256,
        "payload_sha256": sha256_hex(payload),
        "run_id": run_id,
    }
    return json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def entry_run_id(data: bytes) -> str:
    """The flow run that wrote a cache entry ('' when unknown)."""
    try:
        header = json.loads(data.partition(b"\n")[0])
    except ValueError:
        return ""
    return str(header.get("run_id") or "") if isinstance(header, dict) else ""


def read_cache_entry(data: bytes, key: str, style_sha256: str) -> bytes:
    """The targets' bytes of a cache entry, once it proves to be the entry for ``key`` and this
    style; ``ValueError`` saying why not."""
    line, newline, payload = data.partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("magic") != _ENTRY_MAGIC:
        raise ValueError("not a style-target cache entry of this version")
    if header.get("key") != key:
        raise ValueError(f"the entry is for key {str(header.get('key'))[:32]!r}, not {key!r}")
    if header.get("style_sha256") != style_sha256:
        raise ValueError("the entry was made from another style image")
    if header.get("payload_sha256") != sha256_hex(payload):
        raise ValueError("its contents do not match their hash (damaged)")
    return payload


def targets_cache_key(style_sha256: str, spec: TargetSpec, sides: tuple[int, ...]) -> str:
    """Cache key of one style's targets: its bytes and everything that shapes its Gram matrices."""
    material = {"style": style_sha256, "spec": asdict(spec), "sides": sorted(sides), "v": PIPELINE_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TargetCache:
    """Where style targets are cached (``.cache/`` under an output root) and the run that writes
    there (an entry it wrote counts as computed by it, not read from an earlier run)."""

    root: str
    run_id: str = ""

    @classmethod
    def of(cls, settings: BatchSettings) -> TargetCache:
        return cls(settings.output_root, settings.run_id)


def get_or_compute_targets(
    style_uri: str,
    style_bytes: bytes,
    features: VGGFeatures,
    cfg: StyleConfig,
    runtime: RuntimeOptions,
    cache: TargetCache,
    *,
    match: tuple[float, float] | None = None,
    force: bool = False,
) -> TargetsOutcome:
    """Targets from the cache beside the outputs, or computed and stored there. A cache entry that
    fails validation is recomputed, never trusted."""
    sides = cfg.style_sides()
    spec = target_spec(cfg, features, match)
    style_sha = sha256_hex(style_bytes)
    key = targets_cache_key(style_sha, spec, sides)
    uri = join(cache.root, cache_entry_name(key))
    storage = storage_for(uri)
    rejected = ""
    if not force and storage.exists(uri):
        try:
            data = storage.read_bytes(uri)
            cached = targets_from_bytes(read_cache_entry(data, key, style_sha))
            if cached.spec == spec and set(sides) <= set(cached.sides):
                mine = bool(cache.run_id) and entry_run_id(data) == cache.run_id
                return TargetsOutcome(cached, key, cached=True, by_this_run=mine)
            rejected = "the entry holds targets for other settings"
        except FileNotFoundError:
            pass  # vanished since exists(): recompute below
        except (ValueError, TaskError) as exc:  # corrupt, swapped, unreadable: recomputed, never trusted
            rejected = " ".join(str(exc).split())[:200]
    style = decode_image(style_bytes, style_uri, max_pixels=runtime.max_pixels, max_side=max(sides))
    check_aspect(style, cfg, style_uri, style=True)
    storage.write_bytes(join(cache.root, original_thumb(style_uri)), thumbnail(style.rgb, 160), "image/jpeg")
    device = next(iter(features.parameters())).device
    targets = compute_style_targets(style.rgb.to(device), features, cfg, luminance_match=match).to(_cpu())
    storage.write_bytes(
        uri, cache_entry(key, style_sha, targets_to_bytes(targets), cache.run_id), "application/octet-stream"
    )
    return TargetsOutcome(targets, key, cached=False, rejected=rejected)


_Key = tuple[str, "torch.device", str, str]


class ResidentTargets:
    """Style targets kept on their device across pairs: a style's targets are read from the cache
    (and validated, and uploaded) once per process and device, not once per pair. Keyed by the
    cache key, which hashes the style's bytes and everything that shapes its targets, so an entry
    can never be another style's or stale; the most recent ``capacity`` are kept (a few MB each).
    Within one flow run only (the key holds its id; outside a flow run nothing is kept): the
    first pair's outcome stands for the run's later ones, and the summary counts a cache hit only
    for targets an earlier run made, which every pair of this run sees the same way. ``force`` and
    targets made for one photo alone (luminance-matched: their key differs per photo) pass through."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        # (the targets' cache key, the device they live on, the cache's root, the run)
        self._entries: collections.OrderedDict[_Key, TargetsOutcome] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(
        self,
        uri: str,
        data: bytes,
        features: VGGFeatures,
        cfg: StyleConfig,
        runtime: RuntimeOptions,
        cache: TargetCache,
        match: tuple[float, float] | None,
        force: bool,
        device: torch.device,
    ) -> TargetsOutcome:
        key = (
            targets_cache_key(sha256_hex(data), target_spec(cfg, features, match), cfg.style_sides()),
            device,
            cache.root,
            cache.run_id,
        )
        keep = bool(cache.run_id) and match is None and not force
        if keep:
            with self._lock:
                found = self._entries.get(key)
                if found is not None:
                    self._entries.move_to_end(key)
                    return found
        outcome = get_or_compute_targets(uri, data, features, cfg, runtime, cache, match=match, force=force)
        if not keep:
            return outcome
        resident = replace(outcome, targets=outcome.targets.to(device))
        with self._lock:
            self._entries[key] = resident
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return resident

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


RESIDENT = ResidentTargets()


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


def features_for(cfg: StyleConfig, runtime: RuntimeOptions, device: torch.device) -> VGGFeatures:
    return get_features(runtime.weights, runtime.weights_preprocessing, cfg.layers[-1], cfg.pooling, device)


def ensure_style_targets(style_uri: str, cfg: StyleConfig, settings: BatchSettings, force: bool = False) -> CacheUse:
    """The flow's style task: make sure this style's targets for these parameters are cached."""
    data = read_image_bytes(style_uri, settings.runtime.max_pixels)
    with device_pool(settings.runtime.device).acquire() as device:
        cfg = for_device(cfg, device)
        outcome = get_or_compute_targets(
            style_uri,
            data,
            features_for(cfg, settings.runtime, device),
            cfg,
            settings.runtime,
            TargetCache.of(settings),
            force=force,
        )
    return CacheUse(style_uri, outcome.key, outcome.hit, outcome.rejected)
