"""Checks of a whole plan before any work, assembled in one place, :func:`prepare_run`: the manifest
planned, the names settled in the output root (another manifest's results keep theirs), the root
takes new files and has no special file where an output goes; on request every input is there and
is an image (headers only), the device and the weights can be used here. ``nst validate`` gathers
every problem and reports them at once; ``nst run`` and the flow refuse the first set."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nst_batch.tasks.errors import InputError, ManifestError, Problem, StorageError
from nst_batch.tasks.output.atomic import not_regular
from nst_batch.tasks.output.checks import check_writable_root
from nst_batch.tasks.output.layout import (
    CACHE_DIR,
    CACHE_PARENT,
    EARLIER_DIR,
    GALLERY_NAME,
    LIVE_DIR,
    ORIGINALS_DIR,
    RUNS_DIR,
    SUMMARY_NAME,
    THUMBS_DIR,
    pair_thumb,
)
from nst_batch.tasks.output.storage import storage_for
from nst_batch.tasks.pair.image_files import probe_image_file
from nst_batch.tasks.planning.jobs import Plan
from nst_batch.tasks.planning.manifest import ManifestProblem


def input_problems(plan: Plan) -> list[ManifestProblem]:
    """One problem per input that is missing or not an image: local files by their header (nothing
    is decoded), S3 objects by a HEAD request."""
    problems: list[ManifestProblem] = []
    checked: set[str] = set()
    where = [(f"styles.{name}", uri) for name, uri in plan.styles.items()]
    where += [(pair.origin or "contents", pair.content_uri) for pair in plan.pairs]
    for field, uri in where:
        if uri in checked:
            continue
        checked.add(uri)
        reason = _input_problem(uri, plan.settings.runtime.max_pixels)
        if reason:
            problems.append(ManifestProblem(field, reason))
    return problems


DecodeProgress = Callable[[int, int, str], None]  # (inputs decoded, of all, the one now)


def decode_problems(plan: Plan, on_progress: DecodeProgress | None = None) -> list[ManifestProblem]:
    """One problem per input whose pixels do not decode (a truncated JPEG passes a header check
    and fails at run time): every distinct input read and decoded, one at a time, at no more than
    the largest size its pairs use (so memory stays that of one pair's decode)."""
    from nst_batch.tasks.errors import TaskError
    from nst_batch.tasks.pair.image_files import decode_image, read_image_bytes

    named: dict[str, str] = {}  # uri -> the manifest field that names it (the first)
    sides: dict[str, int] = {}  # uri -> the largest side it is decoded to
    for pair in plan.pairs:
        wanted = [(pair.content_uri, pair.origin or "contents", pair.config.size)]
        wanted += [(s.uri, f"styles.{s.name}", max(pair.config.style_sides())) for s in pair.styles]
        for uri, field, side in wanted:
            named.setdefault(uri, field)
            sides[uri] = max(sides.get(uri, 0), side)
    problems: list[ManifestProblem] = []
    for index, (uri, side) in enumerate(sides.items()):
        field = named[uri]
        if on_progress is not None:
            on_progress(index, len(sides), uri)
        try:
            decode_image(
                read_image_bytes(uri, plan.settings.runtime.max_pixels),
                uri,
                max_pixels=plan.settings.runtime.max_pixels,
                max_side=side,
            )
        except TaskError as exc:
            problems.append(ManifestProblem(field, str(exc)))
    if on_progress is not None:
        on_progress(len(sides), len(sides), "")
    return problems


def mask_problems(plan: Plan) -> list[ManifestProblem]:
    """Each pair's mask: it is there and an image, of its photo's aspect ratio, with only the
    colours its ``mask_styles`` lists, and no region too small for its style (one problem per
    mask and photo; a photo that is not there is reported by :func:`input_problems`). Each mask
    is read and decoded once, and each photo's header read once, however many pairs (a sweep's
    points) share them."""
    from nst_batch.core.errors import CoreError
    from nst_batch.core.regions import Region, check_regions
    from nst_batch.tasks.errors import TaskError
    from nst_batch.tasks.pair.image_files import HEADER_BYTES, upright_size_from_header
    from nst_batch.tasks.pair.masks import MaskInput

    regions: dict[tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]], list[Region] | Exception] = {}
    sizes: dict[
        str, tuple[int, int] | None
    ] = {}  # a photo's (width, height), None where its header does not say or it is not there

    def regions_of(uri: str, mapping: tuple[tuple[str, str], ...], names: tuple[str, ...]) -> list[Region]:
        key = (uri, mapping, names)
        if key not in regions:
            try:
                regions[key] = MaskInput(uri, storage_for(uri).read_bytes(uri), dict(mapping), names).regions()
            except FileNotFoundError:
                regions[key] = InputError(f"{uri}: no such mask")
            except (TaskError, CoreError) as exc:
                regions[key] = exc
            except Exception as exc:
                regions[key] = InputError(f"{uri}: cannot read: {' '.join(str(exc).split())}")
        found = regions[key]
        if isinstance(found, Exception):
            raise found
        return found

    def size_of(uri: str) -> tuple[int, int] | None:
        if uri not in sizes:
            try:
                sizes[uri] = upright_size_from_header(storage_for(uri).read_head(uri, HEADER_BYTES))
            except Exception:  # not there or unreadable: input_problems says so
                sizes[uri] = None
        return sizes[uri]

    problems: list[ManifestProblem] = []
    said: set[tuple[str, str]] = set()
    for pair in plan.pairs:
        if pair.mask is None:
            continue
        uri = pair.mask.uri
        try:
            found = regions_of(uri, pair.mask.styles, tuple(s.name for s in pair.styles))
            size = size_of(pair.content_uri)
            if size is not None:
                check_regions(found, len(pair.styles), (size[1], size[0]), pair.config)
        except (TaskError, CoreError) as exc:
            message = " ".join(str(exc).split())
            problem = message if message.startswith(uri) else f"{uri} for {pair.content_uri}: {message}"
            if (pair.origin, problem) not in said:
                said.add((pair.origin, problem))
                problems.append(ManifestProblem(f"{pair.origin}.mask", problem))
    return problems


def _input_problem(uri: str, max_pixels: int) -> str | None:
    """A file's header is read in place (nothing decoded); an object is asked for its size only
    (one request each, not a download)."""
    storage = storage_for(uri)
    try:
        path = storage.local_path(uri)
        if path is not None:
            probe_image_file(path, max_pixels=max_pixels)
            return None
        return _object_problem(uri, storage.size(uri))
    except (InputError, StorageError) as exc:
        return str(exc)


def _object_problem(uri: str, size: int | None) -> str | None:
    return f"{uri}: no such object" if size is None else f"{uri}: empty object (0 bytes)" if size == 0 else None


def output_problems(plan: Plan) -> list[ManifestProblem]:
    """Where the run would write, checked before any work: the root takes new files, and its
    layout has no special file where an output goes (:func:`layout_problems`). ``plan`` is the
    one :func:`nst_batch.tasks.running.ownership.owned` gave, with its names settled."""
    try:
        check_writable_root(plan.settings.output_root)
    except InputError as exc:
        return [ManifestProblem("output", str(exc))]
    return layout_problems(plan)


def layout_problems(plan: Plan) -> list[ManifestProblem]:
    """Local roots (S3 keys are plain objects): every output, sidecar, thumbnail and the summary
    and gallery are absent or regular files (a device, a FIFO or a symlink there would be replaced
    by a file); the folders the layout needs are not files."""
    root = plan.settings.output_root
    local = storage_for(root).local_path(root)
    if local is None or not os.path.isdir(local):
        return []
    problems: list[ManifestProblem] = []
    for folder in (THUMBS_DIR, ORIGINALS_DIR, LIVE_DIR, CACHE_PARENT, CACHE_DIR, RUNS_DIR, EARLIER_DIR):
        path = Path(root, folder)
        if os.path.lexists(path) and not path.is_dir():
            problems.append(
                ManifestProblem(
                    "output", f"{path} exists and is not a folder; the run writes its {folder} there (remove it)"
                )
            )
    names = [SUMMARY_NAME, GALLERY_NAME]
    for pair in plan.pairs:
        names += [f"{pair.name}.{plan.settings.format}", f"{pair.name}.json", pair_thumb(pair.name)]
    for name in names:
        kind = not_regular(Path(root, name))
        if kind:
            problems.append(
                ManifestProblem(
                    "output",
                    f"{Path(root, name)} exists and is {kind}, not a regular file; the run would "
                    "replace it (remove it or choose another output)",
                )
            )
            if len(problems) >= 20:
                break
    return problems


def settings_problems(plan: Plan) -> list[ManifestProblem]:
    """The run's settings that this machine can check: the device exists here, and a weights
    file is a readable regular file. (On a Dask cluster the device is the workers': not checked.)"""
    from nst_batch.core import CoreError
    from nst_batch.tasks.pair.device_pool import devices_for

    problems = []
    try:
        devices_for(plan.settings.runtime.device)
    except CoreError as exc:
        problems.append(ManifestProblem("device", str(exc)))
    weights = plan.settings.runtime.weights
    if weights not in ("caffe", "torchvision"):
        problems += [ManifestProblem("weights", reason)] if (reason := _weights_problem(weights)) else []
    return problems


def _weights_problem(uri: str) -> str | None:
    storage = storage_for(uri)
    if storage.local_path(uri) is None:
        try:
            return _object_problem(uri, storage.size(uri))
        except StorageError as exc:
            return str(exc)
    if not os.path.exists(uri):
        return f"{uri}: no such file"
    if not os.path.isfile(uri):
        return f"{uri}: not a regular file"
    if not os.access(uri, os.R_OK):
        return f"{uri}: not readable (permissions)"
    if os.path.getsize(uri) == 0:
        return f"{uri}: empty file (0 bytes)"
    return None


@dataclass(frozen=True)
class CheckedPlan:
    """A plan made and checked by :func:`prepare_run`. ``problems``: what ``every_problem`` found
    (the plan then holds what could be planned). ``nst run`` runs the flow for it
    (``flows.stylize_batch.stylize_checked``), which then neither plans nor checks again; a
    deployment's flow run prepares its own."""

    manifest: str
    output: str | None
    plan: Plan
    problems: tuple[Problem, ...] = ()
    cluster: str | None = None  # the Dask scheduler whose workers were checked against the plan


def prepare_run(
    manifest: str,
    output: str | None = None,
    *,
    every_problem: bool = False,
    inputs: bool = False,
    settings: bool = False,
    on_cluster: bool = False,
) -> CheckedPlan:
    """The one preflight of a run (``nst validate``, ``nst run`` and the flow's own planning).
    Plans the manifest and settles the names in the output root; checks that the root takes new
    files and holds no special file where an output goes; with ``inputs`` every input's header
    and each mask; with ``settings`` the device (not ``on_cluster``: it is the workers') and the
    weights file. ``every_problem``: gather every problem into the result (a manifest with nothing
    left to plan still raises); otherwise raise :class:`ManifestError` with them (or the root's
    own one-line error when it takes no files at all)."""
    from nst_batch.tasks.planning.plan import load_plan, plan_with_problems
    from nst_batch.tasks.running.ownership import owned

    problems: list[Problem] = []
    if every_problem:
        planned, problems = plan_with_problems(manifest, output)
        if planned is None:
            raise ManifestError(manifest, problems)
        plan = planned
    else:
        plan = load_plan(manifest, output)
        check_writable_root(plan.settings.output_root)
    plan, owning = owned(plan)
    if inputs:
        problems += input_problems(plan) + mask_problems(plan)
    problems += owning
    problems += output_problems(plan) if every_problem else layout_problems(plan)
    if settings:
        problems += [p for p in settings_problems(plan) if not (on_cluster and p.path == "device")]
    if problems and not every_problem:
        raise ManifestError(plan.source, problems)
    return CheckedPlan(manifest, output, plan, tuple(problems))
