"""One pair from its bytes to its outputs, as plain functions (the Prefect tasks in
``nst_batch.tasks.running.prefect_tasks`` wrap them, and ``nst stylize`` is a one-pair job of
them): style targets through a cache, the optimisation, the output, its thumbnails and sidecar.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nst_batch.core import (
    ProgressCallback,
    StyleConfig,
    StyleTargets,
    StylizeResult,
    TargetSpec,
    VGGFeatures,
    compute_style_targets,
    configure_backends,
    for_device,
    luminance_match_for,
    stylize,
    targets_from_bytes,
    targets_to_bytes,
)
from nst_batch.core.image_ops import fit_size
from nst_batch.core.regions import check_regions
from nst_batch.core.stylizer import REPORT_EVERY
from nst_batch.core.targets import target_spec
from nst_batch.tasks.errors import OutputRootError, PairFailed, TaskError
from nst_batch.tasks.output.layout import cache_entry_name, earlier_name, original_thumb, pair_thumb
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.pair.devices import device_pool
from nst_batch.tasks.pair.done import NOT_RUN, by_this_run, done_row, mark_root_down, root_down, shares_targets, sidecar_of_done
from nst_batch.tasks.pair.images import (
    ALPHA_FORMATS,
    HEADER_BYTES,
    OUTPUT_FORMATS,
    LoadedImage,
    check_aspect,
    decode_image,
    encode_image,
    probe_image_header,
    thumbnail,
)
from nst_batch.tasks.pair.masks import MAX_MASK_PIXELS, MaskInput
from nst_batch.tasks.pair.memory_guard import check_fits
from nst_batch.tasks.pair.models import get_features, get_weights
from nst_batch.tasks.pair.record import run_record, sha256_bytes, worker_address
from nst_batch.tasks.pair.row import PairRow, Status
from nst_batch.tasks.pair.threads import use_threads
from nst_batch.tasks.planning.plan import BatchSettings, PairJob
from nst_batch.tasks.planning.runtime import RuntimeOptions

# Bump when a change to the code changes outputs for the same inputs and parameters: it is part
# of every pair's fingerprint, so a re-run then redoes the pairs instead of skipping them.
PIPELINE_VERSION = "1"


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
    header = {"magic": _ENTRY_MAGIC, "key": key, "style_sha256": style_sha256, "payload_sha256": sha256_bytes(payload), "run_id": run_id}
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
    if header.get("payload_sha256") != sha256_bytes(payload):
        raise ValueError("its contents do not match their hash (damaged)")
    return payload


def read(uri: str, max_pixels: int) -> bytes:
    """An input's bytes, once its header says it is an image within ``max_pixels``: a 2 GB file
    that is not one is refused after reading a few kB, not the whole of it."""
    storage = storage_for(uri)
    try:
        probe_image_header(storage.read_head(uri, HEADER_BYTES), uri, max_pixels=max_pixels)
        return storage.read_bytes(uri)
    except FileNotFoundError:
        raise PairFailed(f"{uri}: no such file") from None
    except Exception as exc:
        raise PairFailed(str(exc)) from None


def targets_cache_key(style_sha256: str, spec: TargetSpec, sides: tuple[int, ...]) -> str:
    """Cache key of one style's targets: its bytes and everything that shapes its Gram matrices."""
    material = {"style": style_sha256, "spec": asdict(spec), "sides": sorted(sides), "v": PIPELINE_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def get_or_compute_targets(style_uri: str, style_bytes: bytes, features: VGGFeatures, cfg: StyleConfig, settings: BatchSettings,
                           *, match: tuple[float, float] | None = None, force: bool = False) -> TargetsOutcome:
    """Targets from the cache beside the outputs, or computed and stored there. A cache entry that
    fails validation is recomputed, never trusted."""
    sides = cfg.style_sides()
    spec = target_spec(cfg, features, match)
    style_sha = sha256_bytes(style_bytes)
    key = targets_cache_key(style_sha, spec, sides)
    uri = join(settings.output_root, cache_entry_name(key))
    storage = storage_for(uri)
    rejected = ""
    if not force and storage.exists(uri):
        try:
            data = storage.read_bytes(uri)
            cached = targets_from_bytes(read_cache_entry(data, key, style_sha))
            if cached.spec == spec and set(sides) <= set(cached.sides):
                mine = bool(settings.run_id) and entry_run_id(data) == settings.run_id
                return TargetsOutcome(cached, key, cached=True, by_this_run=mine)
            rejected = "the entry holds targets for other settings"
        except FileNotFoundError:
            pass  # vanished since exists(): recompute below
        except (ValueError, TaskError) as exc:  # corrupt, swapped, unreadable: recomputed, never trusted
            rejected = " ".join(str(exc).split())[:200]
    style = decode_image(style_bytes, style_uri, max_pixels=settings.max_pixels, max_side=max(sides))
    check_aspect(style, cfg, style_uri, style=True)
    storage.write_bytes(join(settings.output_root, original_thumb(style_uri)), thumbnail(style.rgb, 160), "image/jpeg")
    device = next(iter(features.parameters())).device
    targets = compute_style_targets(style.rgb.to(device), features, cfg, luminance_match=match).to(_cpu())
    storage.write_bytes(uri, cache_entry(key, style_sha, targets_to_bytes(targets), settings.run_id), "application/octet-stream")
    return TargetsOutcome(targets, key, cached=False, rejected=rejected)


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _features_for(cfg: StyleConfig, settings: BatchSettings, device: Any) -> VGGFeatures:
    return get_features(settings.weights, settings.weights_preprocessing, cfg.layers[-1], cfg.pooling, device)


def ensure_style_targets(style_uri: str, cfg: StyleConfig, settings: BatchSettings, force: bool = False) -> dict[str, Any]:
    """The flow's style task: make sure this style's targets for these parameters are cached."""
    data = read(style_uri, settings.max_pixels)
    with device_pool(settings.device).acquire() as device:
        cfg = for_device(cfg, device)
        outcome = get_or_compute_targets(style_uri, data, _features_for(cfg, settings, device), cfg, settings, force=force)
    return {"style": style_uri, "key": outcome.key, "cached": outcome.hit, **({"rejected": outcome.rejected} if outcome.rejected else {})}


def pair_fingerprint(content_sha: str, style_shas: list[str], params: dict[str, Any], settings: BatchSettings, weights_identity: str,
                     mask: MaskInput | None = None) -> str:
    # PNG is lossless: its bytes do not depend on `quality`, so changing it redoes no PNG output
    # (the default stands in, which keeps the fingerprints of outputs made before this rule).
    quality = settings.quality if settings.format != "png" else RuntimeOptions().quality
    material = {"content": content_sha, "styles": style_shas, "params": params, "weights": weights_identity,
                "format": settings.format, "quality": quality, "v": PIPELINE_VERSION}
    if mask is not None:  # only then: the fingerprints of pairs without one stay what they were
        material["mask"] = {"sha256": sha256_bytes(mask.data), "styles": sorted(mask.styles.items())}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run_pair(pair: PairJob, settings: BatchSettings, force: bool = False, on_step: ProgressCallback | None = None) -> PairRow:
    """Produce one pair (or skip it when its output is current). Raises :class:`PairFailed`."""
    down = root_down(settings.output_root)
    if down:
        raise PairFailed(f"{NOT_RUN} ({down})")
    began = time.perf_counter()
    cfg = pair.config
    content_bytes = read(pair.content_uri, settings.max_pixels)
    style_bytes = [read(s.uri, settings.max_pixels) for s in pair.styles]
    mask = _read_mask(pair)
    weights = _weights_identity(settings)
    fingerprint = pair_fingerprint(sha256_bytes(content_bytes), [sha256_bytes(b) for b in style_bytes], cfg.to_json(), settings, weights,
                                   mask)
    row = pair.row(settings)
    previous, redo = sidecar_of_done(pair, settings)
    done = previous if previous is not None and previous.get("fingerprint") == fingerprint else None
    if done is not None and (not force or by_this_run(done, settings)):  # --force redoes earlier runs' work, not this run's
        return done_row(row, done, settings)
    if previous is not None and done is None and settings.keep_earlier:
        keep_earlier(pair, settings, previous)
    try:
        # An output that did not check out is produced again, and the summary says why (redone).
        return _produce(pair, row, redo, settings, content_bytes, style_bytes, fingerprint, force, on_step, began, mask)
    except PairFailed:
        raise
    except Exception as exc:  # bad image, NaN loss, storage fault: one line for the summary
        if isinstance(exc, OutputRootError):
            mark_root_down(settings.output_root, exc)
        raise PairFailed(" ".join(str(exc).split()) or type(exc).__name__) from exc


def _read_mask(pair: PairJob) -> MaskInput | None:
    if pair.mask is None:
        return None
    return MaskInput(pair.mask.uri, read(pair.mask.uri, MAX_MASK_PIXELS), pair.mask.mapping(), tuple(s.name for s in pair.styles))


def keep_earlier(pair: PairJob, settings: BatchSettings, sidecar: dict[str, Any]) -> None:
    """Copy a pair's finished output and sidecar under ``earlier/`` before it is produced again
    with other parameters or inputs (copies, not moves: until the new ones are written, the pair
    still shows its last image). A copy that fails fails the pair, before any work: nothing is lost."""
    when = str(sidecar.get("finished_at") or "")
    for uri, extension in ((settings.output_uri(pair.name), settings.format), (settings.sidecar_uri(pair.name), "json")):
        kept = join(settings.output_root, earlier_name(pair.name, when, extension))
        try:
            storage_for(kept).write_bytes(kept, storage_for(uri).read_bytes(uri))
        except FileNotFoundError:
            continue
        except Exception as exc:
            raise PairFailed(f"keep_earlier: could not keep {uri} as {kept}: {' '.join(str(exc).split())}") from None


def _weights_identity(settings: BatchSettings) -> str:
    try:
        return get_weights(settings.weights, settings.weights_preprocessing).identity
    except Exception as exc:
        raise PairFailed(f"weights {settings.weights}: {exc}") from None


class _Timings(dict):  # type: ignore[type-arg]
    """Seconds per phase of a pair: where its time goes besides the optimisation (decoding, the
    memory guard and style targets, encoding and writing), recorded in its sidecar."""

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self[phase] = round(self.get(phase, 0.0) + time.perf_counter() - began, 4)


@dataclass
class Produced:
    """One stylized image and what made it."""

    image: Any  # (1, 3, H, W) on the CPU
    content: LoadedImage
    result: StylizeResult
    cfg: StyleConfig  # settled for the device it ran on
    device: Any
    outcomes: list[TargetsOutcome]  # per style: its targets, from the cache or computed
    timings: dict[str, float]
    # The judge's figures (nst_batch.core.quality) at the output's size and at gallery scale:
    # {"512": {"content": .., "style_gain": ..}, "256": {...}}; empty if they could not be measured.
    quality: dict[str, dict[str, float]] = field(default_factory=dict)


def produce_image(content_uri: str, content_bytes: bytes, styles: Sequence[tuple[str, bytes]], cfg: StyleConfig, settings: BatchSettings,
                  *, cache: bool = True, force: bool = False, init: tuple[str, bytes] | None = None, on_step: ProgressCallback | None = None,
                  report_every: int = REPORT_EVERY, deterministic: bool = False, on_decoded: Callable[[LoadedImage], None] | None = None,
                  mask: MaskInput | None = None) -> Produced:
    """The one path from a pair's bytes to its image, for ``nst stylize`` and every runner:
    decode, the memory guard, a device, the style targets (through the cache under the output
    root, or computed here with ``cache`` False), the optimisation."""
    timings = _Timings()
    with timings("decode"):
        content = decode_image(content_bytes, content_uri, max_pixels=settings.max_pixels, max_side=cfg.size)
        check_aspect(content, cfg, content_uri)
        decoded = [] if cache else [_decoded_style(uri, data, cfg, settings) for uri, data in styles]
        start = decode_image(init[1], init[0], max_pixels=settings.max_pixels, max_side=cfg.size) if init is not None else None
    if on_decoded is not None:
        on_decoded(content)  # nst stylize's checkpoints encode with the content's alpha
    regions = mask.regions() if mask is not None else []
    if regions:  # a mask that cannot be run fails here, before the guard, a device and the style targets
        check_regions(regions, len(styles), (content.rgb.shape[-2], content.rgb.shape[-1]), cfg)
    # The guard counts the style images where they are decoded here; cached targets need none.
    style_pixels = max(math.prod(fit_size(*s.rgb.shape[-2:], max(cfg.style_sides()))) for s in decoded) if decoded else None
    with device_pool(settings.device).acquire_slot() as slot:
        device = slot.device
        # Per pair, not per process: a Dask worker runs pairs of manifests with other settings.
        use_threads(settings.threads)
        with timings("setup"):
            cfg = for_device(cfg, device)
            check_fits(cfg, content.rgb.shape[-2], content.rgb.shape[-1], device, content_uri, style_pixels, sharing=slot.sharing)
            features = _features_for(cfg, settings, device)
            match = luminance_match_for(content.rgb, cfg)
            if cache:
                outcomes = [get_or_compute_targets(uri, data, features, cfg, settings, match=match, force=force and not shares_targets(cfg))
                            for uri, data in styles]
            else:
                outcomes = [TargetsOutcome(compute_style_targets(s.rgb.to(device), features, cfg, luminance_match=match), "", cached=False)
                            for s in decoded]
            configure_backends(device, deterministic)
        with timings("stylize"):
            result = stylize(content.rgb.to(device), features, cfg, targets=[o.targets for o in outcomes],
                             init_image=start.rgb.to(device) if start is not None else None, regions=regions, on_step=on_step,
                             report_every=report_every)
            image = result.image.cpu()  # waits for the GPU: the optimisation's time, not the encoder's
        with timings("quality"):
            # The judge compares the whole output with the whole painting (or blend): with regions
            # of several styles or kept, that says nothing true, so it is not said.
            quality = measure_quality(result.image, content, styles, cfg, settings, device) if not regions else {}
    return Produced(image, content, result, cfg, device, outcomes, timings, quality)


def measure_quality(image: Any, content: LoadedImage, styles: Sequence[tuple[str, bytes]], cfg: StyleConfig, settings: BatchSettings,
                    device: Any) -> dict[str, dict[str, float]]:
    """Content distance and style gain of the output (nst_batch.core.quality), at its size and at
    gallery scale, against the paintings decoded at the output's size (JPEGs at a reduced DCT
    scale): three VGG forwards per size, about 1 % of a pair at the defaults. Never fails a pair:
    what cannot be measured is left out."""
    from nst_batch.core.quality import LAST_LAYER, Evaluator, judge

    try:
        side = max(image.shape[-2:])
        paintings = [decode_image(data, uri, max_pixels=settings.max_pixels, max_side=side).rgb.to(device) for uri, data in styles]
        features = get_features(settings.weights, settings.weights_preprocessing, LAST_LAYER, "max", device)
        evaluator = Evaluator(features, content.rgb.to(device), paintings, cfg.blend_weights(len(paintings)))
        return judge(evaluator, image.to(device))
    except Exception:  # noqa: BLE001 - a measure, not the product: the output stands without it
        return {}


def _decoded_style(uri: str, data: bytes, cfg: StyleConfig, settings: BatchSettings) -> LoadedImage:
    style = decode_image(data, uri, max_pixels=settings.max_pixels, max_side=max(cfg.style_sides()))
    check_aspect(style, cfg, uri, style=True)
    return style


def _produce(pair: PairJob, row: dict[str, Any], redone: str, settings: BatchSettings, content_bytes: bytes, style_bytes: list[bytes],
             fingerprint: str, force: bool, on_step: ProgressCallback | None, began: float, mask: MaskInput | None = None) -> PairRow:
    made = produce_image(pair.content_uri, content_bytes, [(s.uri, b) for s, b in zip(pair.styles, style_bytes, strict=True)], pair.config,
                         settings, force=force, on_step=on_step, mask=mask)
    with made.timings("write"):
        written = _write_images(pair, settings, made.image, made.content)
    styles = [(s.name, s.uri, b) for s, b in zip(pair.styles, style_bytes, strict=True)]
    sidecar = {
        **pair_record(pair.name, settings.output_uri(pair.name), settings.format, written, pair.content_uri, content_bytes, styles, made, settings, began),
        "fingerprint": fingerprint,
        **({"mask": mask.record()} if mask is not None else {}),
        **({"notes": notes} if (notes := input_notes(made.content, settings.format)) else {}),
        **({"sweep": pair.sweep, "sweep_of": pair.sweep_of} if pair.sweep else {}),
        "run_id": settings.run_id,  # the flow run that wrote it
        "manifest": settings.manifest or None,  # and from which manifest: a name another manifest's result holds is not replaced
        "worker": worker_address(),  # the Dask worker that produced it (None outside a cluster)
    }
    # The sidecar goes last: it is what marks the pair as done for a re-run.
    uri = settings.sidecar_uri(pair.name)
    storage_for(uri).write_bytes(uri, (json.dumps(sidecar, indent=2) + "\n").encode(), "application/json")
    # Which targets this pair used, and which it had to compute itself: the flow tells, from these
    # and its style tasks, which were made by this run and which came from an earlier one.
    return PairRow(**row, status=Status.PRODUCED, redone=redone, notes=notes, quality=made.quality or None, target_keys=[o.key for o in made.outcomes],
                   computed_keys=[o.key for o in made.outcomes if not o.hit], final_losses=made.result.final_losses,
                   iterations=made.result.total_iterations, wall_time_s=sidecar["wall_time_s"], timings=dict(made.timings), worker=sidecar["worker"])


def input_notes(content: LoadedImage, fmt: str) -> list[str]:
    """What the photo lost on its way to the output, one line each: its decode's notes (the first
    frame of several taken, the decoder's warnings) and its transparency where the format has none."""
    notes = list(content.notes)
    if content.alpha is not None and OUTPUT_FORMATS[fmt] not in ALPHA_FORMATS:
        notes.append(f"its transparency is flattened onto white: {fmt} holds no alpha (format png or webp keeps it)")
    return notes


def pair_record(name: str, output_uri: str, fmt: str, written: bytes, content_uri: str, content_bytes: bytes,
                styles: Sequence[tuple[str, str, bytes]], made: Produced, settings: BatchSettings, began: float) -> dict[str, Any]:
    """What a pair's sidecar records, and ``nst stylize --metadata`` in the same format: the
    output and its hash (a re-run's skip checks the output against them), the inputs and theirs,
    where the style targets came from, the run (parameters, weights, losses, device, versions),
    where its time went and when it finished. ``styles``: (name, URI, bytes) of each."""
    return {
        "name": name,
        "output": output_uri,
        "output_bytes": len(written),
        "output_sha256": sha256_bytes(written),
        "content": {"uri": content_uri, "sha256": sha256_bytes(content_bytes), "size": list(made.content.original_size)},
        "styles": [{"name": n, "uri": u, "sha256": sha256_bytes(b)} for n, u, b in styles],
        "format": fmt,
        "style_cache": [{"style": u, "key": o.key, "hit": o.hit, **({"rejected": o.rejected} if o.rejected else {})}
                        for (_, u, _), o in zip(styles, made.outcomes, strict=True) if o.key],  # computed without the cache: none
        **run_record(made.cfg, get_weights(settings.weights, settings.weights_preprocessing), made.result, made.device, began),
        "pipeline_version": PIPELINE_VERSION,
        **({"quality": made.quality} if made.quality else {}),  # content distance and style gain, at the output's size and at 256 px
        "timings": dict(made.timings),  # seconds: decode, setup (guard, features, style targets), stylize, quality, write
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),  # the gallery shows it for later skips
    }


def _write_images(pair: PairJob, settings: BatchSettings, image: Any, content: Any) -> bytes:
    """The output, its thumbnail, and the photo's thumbnail (the gallery heads its rows with the
    photos, and its columns with the paintings, written where a style is decoded: small copies,
    rewritten by every pair that uses them)."""
    fmt = OUTPUT_FORMATS[settings.format]
    output_uri = settings.output_uri(pair.name)
    storage = storage_for(output_uri)
    data = encode_image(image, fmt, alpha=content.alpha, quality=settings.quality)
    storage.write_bytes(output_uri, data, f"image/{'jpeg' if fmt == 'JPEG' else fmt.lower()}")
    storage.write_bytes(join(settings.output_root, pair_thumb(pair.name)), thumbnail(image), "image/jpeg")
    storage.write_bytes(join(settings.output_root, original_thumb(pair.content_uri)), thumbnail(content.rgb, 160), "image/jpeg")
    return data
