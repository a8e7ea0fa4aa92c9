"""Checks of a whole plan before any work: every input is there and is an image, and the output
root takes new files. ``nst validate`` reports them all at once; ``nst run`` refuses a root it
cannot write."""

from __future__ import annotations

from tasks.errors import InputError, StorageError
from tasks.images import probe_image_file
from tasks.manifest import ManifestError, ManifestProblem
from tasks.outputs import check_writable_root
from tasks.plan import Plan
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


def check_plan(plan: Plan) -> None:
    """Raise :class:`ManifestError` with every input problem and an unwritable output root."""
    problems = input_problems(plan)
    try:
        check_writable_root(plan.settings.output_root)
    except InputError as exc:
        problems.append(ManifestProblem("output", str(exc)))
    if problems:
        raise ManifestError(plan.source, problems)
