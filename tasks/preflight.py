"""Checks of a whole plan before any work: every input is there and is an image, and the output
root takes new files. ``nst validate`` reports them all at once; ``nst run`` refuses a root it
cannot write."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.atomic import not_regular
from tasks.errors import InputError, StorageError
from tasks.gallery import GALLERY_NAME, ORIGINALS_DIR, THUMBS_DIR, pair_thumb
from tasks.images import probe_image_file
from tasks.live import LIVE_DIR
from tasks.manifest import ManifestError, ManifestProblem
from tasks.outputs import check_writable_root
from tasks.plan import CACHE_DIR, SUMMARY_NAME, Plan
from tasks.storage import is_s3, storage_for


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
        reason = _input_problem(uri, plan.settings.max_pixels)
        if reason:
            problems.append(ManifestProblem(field, reason))
    return problems


def _input_problem(uri: str, max_pixels: int) -> str | None:
    try:
        if is_s3(uri):
            return None if storage_for(uri).exists(uri) else f"{uri}: no such object"
        probe_image_file(uri, max_pixels=max_pixels)
    except (InputError, StorageError) as exc:
        return str(exc)
    return None


def output_problems(plan: Plan) -> list[ManifestProblem]:
    """Where the run would write, checked before any work (local roots: S3 keys are plain objects):
    the root takes new files; every output, sidecar, thumbnail and the summary and gallery are
    absent or regular files (a device, a FIFO or a symlink there would be replaced by a file); the
    folders the layout needs are not files."""
    root = plan.settings.output_root
    try:
        check_writable_root(root)
    except InputError as exc:
        return [ManifestProblem("output", str(exc))]
    if is_s3(root) or not os.path.isdir(root):
        return []
    problems: list[ManifestProblem] = []
    for folder in (THUMBS_DIR, ORIGINALS_DIR, LIVE_DIR, ".cache", CACHE_DIR):
        path = Path(root, folder)
        if os.path.lexists(path) and not path.is_dir():
            problems.append(ManifestProblem("output", f"{path} exists and is not a folder; the run writes its {folder} there (remove it)"))
    names = [SUMMARY_NAME, GALLERY_NAME]
    for pair in plan.pairs:
        names += [f"{pair.name}.{plan.settings.format}", f"{pair.name}.json", pair_thumb(pair.name)]
    for name in names:
        kind = not_regular(Path(root, name))
        if kind:
            problems.append(ManifestProblem("output", f"{Path(root, name)} exists and is {kind}, not a regular file; the run would "
                                                      "replace it (remove it or choose another output)"))
            if len(problems) >= 20:
                break
    return problems


def check_outputs(plan: Plan) -> None:
    """Raise :class:`ManifestError` with every problem of where the run writes (``nst run`` and the flow)."""
    problems = output_problems(plan)
    if problems:
        raise ManifestError(plan.source, problems)


def check_plan(plan: Plan) -> None:
    """Raise :class:`ManifestError` with every input problem and every problem of the outputs."""
    problems = input_problems(plan) + output_problems(plan)
    if problems:
        raise ManifestError(plan.source, problems)
