"""Who owns a name in an output root: runs of different manifests (different days, different
teams) share one root without replacing each other's results or a file the tool did not write.

The rule (docs/manifest.md, "Output names"): a pair's output name is ``<photo stem>__<styles>``.
When the root already holds a result under that name made from **another photo** by **another
manifest** (camera names repeat: ``IMG_0001.jpg`` is on every card), this run's pair takes the name
with a short hash of its photo's URI, ``IMG_0001__monet-3fa2c91b``: the same every time, so a re-run
finds its result again. A name the manifest gives (``name:``) is the user's: such a clash is refused
before any work. A result from the same photo, or from the same manifest, is this pair's own: it is
skipped or redone as before. Files the tool writes for the root itself (``index.html``,
``summary.json``) are replaced only when it wrote them, and no file a run writes is one of its inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from nst_batch.tasks.errors import TaskError
from nst_batch.tasks.output.checks import same_file
from nst_batch.tasks.output.layout import GALLERY_MARK, GALLERY_NAME, SUMMARY_NAME, pair_thumb
from nst_batch.tasks.output.storage import basename, join, storage_for
from nst_batch.tasks.pair.records import PairRecord
from nst_batch.tasks.planning.jobs import PairJob, Plan
from nst_batch.tasks.planning.manifest import ManifestProblem
from nst_batch.tasks.planning.plan import safe_name, sweep_name

_OLD_GALLERY_MARK = '<meta name="referrer" content="no-referrer"><title>'  # galleries before the mark


@dataclass(frozen=True)
class Holder:
    """What a sidecar in the root says of the result it describes."""

    content: str
    manifest: str | None  # None: written before sidecars recorded their manifest
    run_id: str

    def foreign_to(self, pair: PairJob, plan: Plan) -> bool:
        """Another photo from another manifest: not this pair's result to replace."""
        return self.content != pair.content_uri and self.manifest != plan.settings.manifest

    def said(self) -> str:
        run = f"run {self.run_id[:8]}" if self.run_id else "an earlier run"
        return f"{run} of {self.manifest or 'another manifest'}, from {self.content}"


def owned(plan: Plan) -> tuple[Plan, list[ManifestProblem]]:
    """The plan with each generated name that another manifest's result holds moved to its hashed
    form (a note says so), and the problems: an explicit name so held, a file of the root's own
    names that the tool did not write, an output or sidecar that is one of the inputs."""
    problems = _input_problems(plan) + _foreign_files(plan)
    root = plan.settings.output_root
    try:
        present = set(storage_for(root).list(root))
    except TaskError:
        return plan, problems  # a root that cannot be listed is the write check's to report
    problems += _unsigned_outputs(plan, present)
    held = _holders(plan, present)
    if not held:
        return plan, problems
    notes = list(plan.notes)
    taken = {p.name.lower() for p in plan.pairs}
    pairs = []
    for pair in plan.pairs:
        holder = held.get(pair.name)
        if holder is None or not holder.foreign_to(pair, plan):
            pairs.append(pair)
            continue
        moved = None if pair.named else _hashed(pair)
        again = held.get(moved.name) if moved is not None else None
        if moved is None or moved.name.lower() in taken or (again is not None and again.foreign_to(moved, plan)):
            problems.append(
                ManifestProblem(
                    pair.origin or "pairs",
                    f"{plan.settings.output_uri(pair.name)} holds the result of "
                    f"{holder.said()}; give this pair another name, or use another output root",
                )
            )
            pairs.append(pair)
            continue
        notes.append(
            ManifestProblem(
                pair.origin or "pairs",
                f"{pair.name} is taken by the result of {holder.said()}: this pair writes {moved.name}",
            )
        )
        taken.add(moved.name.lower())
        pairs.append(moved)
    return replace(plan, pairs=tuple(pairs), notes=tuple(notes)), problems


def _hashed(pair: PairJob) -> PairJob:
    """The pair under its name with a hash of its photo's URI (a sweep's points all move together)."""
    digest = hashlib.sha256(pair.content_uri.encode()).hexdigest()[:8]
    if pair.sweep:
        base = safe_name(f"{pair.sweep_of}-{digest}")
        return replace(pair, name=sweep_name(base, pair.sweep), sweep_of=base)
    return replace(pair, name=safe_name(f"{pair.name}-{digest}"))


def _holders(plan: Plan, present: set[str]) -> dict[str, Holder]:
    """The sidecars already in the root for this plan's names and their hashed forms, read in
    parallel (on S3 each is a request)."""
    names = {p.name for p in plan.pairs} | {_hashed(p).name for p in plan.pairs}
    wanted = [n for n in names if plan.settings.sidecar_uri(n) in present]
    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        read = dict(zip(wanted, pool.map(lambda n: _holder(plan.settings.sidecar_uri(n)), wanted), strict=True))
    return {name: holder for name, holder in read.items() if holder is not None}


def _holder(uri: str) -> Holder | None:
    try:
        record = PairRecord.from_json(json.loads(storage_for(uri).read_bytes(uri)))
    except (ValueError, FileNotFoundError, TaskError):
        return None  # unreadable: the pair's own check redoes it, as before
    if record is None or not record.content.uri:
        return None
    return Holder(record.content.uri, record.manifest or None, record.run_id)


def _unsigned_outputs(plan: Plan, present: set[str]) -> list[ManifestProblem]:
    """A file under a pair's output name without a sidecar, that the tool did not write (its
    outputs carry a signature): someone's image, not replaced. One the tool wrote (a run killed
    between the output and its sidecar) is produced again, as before."""
    from nst_batch.tasks.pair.image_files import signed_by_us

    problems = []
    for pair in plan.pairs:
        output = plan.settings.output_uri(pair.name)
        if output in present and plan.settings.sidecar_uri(pair.name) not in present:
            try:
                ours = signed_by_us(storage_for(output).read_bytes(output))
            except (FileNotFoundError, TaskError):
                continue
            if not ours:
                problems.append(
                    ManifestProblem(
                        pair.origin or "pairs",
                        f"{output} exists and was not written by nst-batch (no sidecar, "
                        "no signature): the run would replace it; move it, or use another "
                        "output root",
                    )
                )
    return problems


def _input_problems(plan: Plan) -> list[ManifestProblem]:
    """Any file the run writes for a pair that is one of its inputs (a photo or a painting in the
    output root under a name a pair writes)."""
    inputs = {p.content_uri: p.origin or "contents" for p in plan.pairs} | {
        u: f"styles.{n}" for n, u in plan.styles.items()
    }
    by_name: dict[
        str, list[str]
    ] = {}  # another spelling of the same file ends with the same name (or is a link: stat'ed)
    for uri in inputs:
        by_name.setdefault(basename(uri), []).append(uri)
    problems = []
    for pair in plan.pairs:
        for written in _written(plan, pair):
            field = inputs.get(written) or next(
                (inputs[u] for u in by_name.get(basename(written), []) if same_file(written, u)), None
            )
            if field is not None:
                problems.append(
                    ManifestProblem(
                        pair.origin or "pairs",
                        f"{written} is an input ({field}): the run would write over it; "
                        "give the pair another name, or use another output root",
                    )
                )
    return problems


def _written(plan: Plan, pair: PairJob) -> Iterable[str]:
    s = plan.settings
    return (s.output_uri(pair.name), s.sidecar_uri(pair.name), join(s.output_root, pair_thumb(pair.name)))


def _foreign_files(plan: Plan) -> list[ManifestProblem]:
    """``index.html`` and ``summary.json`` in the root that the tool did not write: refused, not replaced."""
    root = plan.settings.output_root
    problems = []
    for name, ours in ((GALLERY_NAME, _our_gallery), (SUMMARY_NAME, _our_summary)):
        uri = join(root, name)
        try:
            head = storage_for(uri).read_head(uri, 1 << 16)
        except (FileNotFoundError, TaskError):
            continue
        if not ours(head):
            problems.append(
                ManifestProblem(
                    "output",
                    f"{uri} exists and was not written by nst-batch: the run would replace it "
                    "(move it, or use another output root)",
                )
            )
    return problems


def _our_gallery(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    return GALLERY_MARK in text or _OLD_GALLERY_MARK in text


def _our_summary(head: bytes) -> bool:
    try:
        data = json.loads(head)
    except ValueError:
        return len(head) >= 1 << 16 and head.lstrip().startswith(
            b'{\n  "manifest"'
        )  # larger than the head read: ours begin so
    return isinstance(data, dict) and {"manifest", "counts", "pairs"} <= set(data)
