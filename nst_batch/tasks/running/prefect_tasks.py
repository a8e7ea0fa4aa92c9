"""Thin Prefect tasks over the tasks ring, small values in and out: planning (and readying the
output root: an interrupted run's live files and partial writes go), inputs decoded before any
work, style targets, a chunk of pairs (with their live progress artifacts), the summary, the gallery.

Prefect's own result caching is off (``NO_CACHE``): skipping finished work is decided by our
hash of the input bytes and parameters (see ``nst_batch.tasks.pair.pipeline``), which also holds across runs and
machines, while Prefect's default key would hash the URI strings.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from nst_batch.core import StepInfo, StyleConfig, with_images
from nst_batch.tasks.basics import json_bytes, plural
from nst_batch.tasks.errors import ManifestError, OutputRootError, PairFailed
from nst_batch.tasks.output.layout import SUMMARY_NAME, run_summary_name
from nst_batch.tasks.output.storage import StorageError, storage_for
from nst_batch.tasks.pair.done import failed_row
from nst_batch.tasks.pair.records import CacheUse, PairRow, Status, StyleFailed
from nst_batch.tasks.planning.jobs import BatchSettings, PairJob, Plan
from nst_batch.tasks.presenting.gallery import build_gallery
from nst_batch.tasks.presenting.gallery_page import style_label
from nst_batch.tasks.presenting.live import LivePair
from nst_batch.tasks.presenting.progress import format_losses, pair_finished, pair_step
from nst_batch.tasks.presenting.run_marker import clear_ended_live_view
from nst_batch.tasks.running.cluster import failure_reason
from nst_batch.tasks.running.preflight import decode_problems, prepare_run
from nst_batch.tasks.running.summary import RunSummary

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import State

T = TypeVar("T")


def _transient(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Retry only storage faults; a bad manifest or image fails the same way every time."""
    try:
        state.result()
    except OutputRootError:
        return False  # a full or read-only root stays so for the seconds a retry waits
    except StorageError:
        return True
    except Exception:
        return False
    return False


@task(name="decode-inputs", cache_policy=NO_CACHE)
def decode_inputs(plan: Plan) -> None:
    """Decode every input before any work (``decode_check``); a :class:`ManifestError` naming each
    one that does not decode fails the run there."""
    logger = get_run_logger()

    def progress(done: int, total: int, uri: str) -> None:
        if done == total or done % 50 == 0:
            logger.info("decoded %d/%d input images", done, total)

    problems = decode_problems(plan, progress)
    if problems:
        raise ManifestError(plan.source, problems)


@task(name="plan-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def plan_batch(manifest: str, output: str | None, planned: Plan | None = None) -> Plan:
    """The run's plan, checked: ``planned`` when its caller made and checked it (nst run), else
    made and checked here (a deployment's run). Then the output root is readied: the live files of
    an interrupted run and the parts its writes left go."""
    plan = planned
    if plan is None:
        plan = prepare_run(manifest, output).plan  # names settled; no special file where an output goes
    clear_ended_live_view(plan.settings.output_root)  # an interrupted run's live files would show its pairs as running
    logger = get_run_logger()
    for note in plan.notes if planned is None else ():  # nst run printed its plan's notes before the flow
        logger.warning("%s", note)
    for stale in storage_for(plan.settings.output_root).remove_stale_parts(plan.settings.output_root):
        logger.warning("removed %s, left by an interrupted run", stale)
    logger.info("planned %d pairs over %d styles into %s", len(plan.pairs), len(plan.styles), plan.settings.output_root)
    return plan


@task(name="style-targets", cache_policy=NO_CACHE, task_run_name="style-targets {style_uri}")
def style_targets(style_uri: str, config: StyleConfig, settings: BatchSettings, force: bool) -> CacheUse | StyleFailed:
    """The style's targets, cached; a style that cannot be used is a :class:`StyleFailed` with its
    reason (its pairs fail with it), not a task failure, whose log Prefect writes with a traceback."""
    from nst_batch.tasks.pair.target_cache import (
        ensure_style_targets,  # the stylizer: PyTorch is imported where it runs
    )

    logger = get_run_logger()
    try:
        outcome = ensure_style_targets(style_uri, config, settings, force)
    except Exception as exc:  # a bad style image, a storage fault: one line, the reason the pairs' rows carry
        reason = failure_reason(exc)
        logger.warning("style targets for %s: failed: %s", style_uri, reason)
        return StyleFailed(style_uri, reason)
    logger.info("style targets for %s: %s", style_uri, "from cache" if outcome.hit else "computed")
    return outcome


class _LogProgress:
    """Log a line at most every ``every_s`` seconds, and at the end of each scale of a pair that
    has run that long: every log line is a write to Prefect's database, and a collection of
    10,000 small pairs must not pay for lines nobody reads (the pair's end is logged anyway)."""

    def __init__(self, name: str, every_s: float = 30.0) -> None:
        self.name, self.every_s, self.began = name, every_s, time.monotonic()
        self.last = self.began
        self.logger = get_run_logger()

    def __call__(self, step: StepInfo) -> None:
        now = time.monotonic()
        long_pair = now - self.began >= self.every_s
        if (step.scale_done and long_pair) or (step.losses and now - self.last >= self.every_s):
            self.last = now
            self.logger.info(
                "%s: scale %d/%d %dx%d iteration %d/%d %s",
                self.name,
                step.scale_index + 1,
                step.num_scales,
                step.width,
                step.height,
                step.iteration,
                step.max_iterations,
                format_losses(step.losses),
            )


@task(name="stylize-pairs", cache_policy=NO_CACHE)
def stylize_pairs(pairs: list[PairJob], settings: BatchSettings, force: bool) -> list[PairRow]:
    """Produce (or skip) the chunk's pairs, those of one shape bucket and parameter set in batches
    (nst_batch.tasks.pair.pipeline.run_pairs); one pair's failure is its row, never the others'.
    Each pair's row is reported as it finishes."""
    # The stylizer, and PyTorch with it, is imported where a pair runs: importing the flow (a
    # Prefect worker, `prefect deploy`, a Dask scheduler) does not pay for it.
    from nst_batch.tasks.pair.pipeline import run_pairs

    artifacts = _ChunkArtifacts(pairs, settings.run_id)
    watches = [_PairWatch(pair, settings, artifacts, i) for i, pair in enumerate(pairs)]
    rows: list[PairRow | None] = [None] * len(pairs)

    def finished(index: int, outcome: PairRow | PairFailed) -> None:
        row = rows[index] = watches[index].finished(outcome, artifacts)
        pair_finished(row, settings.run_id)

    run_pairs(pairs, settings, force, [w.on_step for w in watches], on_done=finished)
    artifacts.done(len(pairs))
    return [row for row in rows if row is not None]


class _PairWatch:
    """What watches one pair while it runs: its log lines, the CLI's progress, its live view, the
    chunk's artifacts."""

    def __init__(self, pair: PairJob, settings: BatchSettings, artifacts: _ChunkArtifacts, index: int) -> None:
        self.pair, self.settings = pair, settings
        self.log = _LogProgress(pair.name)
        self.live = LivePair(
            pair.name, settings, content=pair.content_uri, style=style_label(pair.style_names(), pair.blend())
        )

        def on_step(step: StepInfo) -> None:
            self.log(step)
            pair_step(pair.name, step)
            self.live(step)
            artifacts.step(pair.name, index, step, self.live)

        self.on_step = with_images(on_step)  # the live view shows the best image so far

    def finished(self, outcome: PairRow | PairFailed, artifacts: _ChunkArtifacts) -> PairRow:
        self.live.finish()
        if isinstance(outcome, PairFailed):
            # A failed pair is a row of the summary, not a task crash: one log line, no traceback
            # (2,000 bad files once made 4.8 MB of tracebacks). The flow run still ends Failed.
            get_run_logger().info("%s: failed: %s", self.pair.name, outcome)
            return replace(failed_row(self.pair, self.settings, str(outcome)), live_s=_finish(self.live, artifacts))
        if outcome.status != Status.SKIPPED:
            get_run_logger().info("%s: %s", self.pair.name, outcome.status)
        return replace(outcome, live_s=_finish(self.live, artifacts))


def _finish(live: LivePair, artifacts: _ChunkArtifacts) -> float:
    """Seconds the live view cost this pair (its files and this chunk's artifacts)."""
    return round(live.seconds + artifacts.take_seconds(), 4)


class RunProgress:
    """The flow run's progress artifact: pairs finished of the total, updated at most every
    ``every_s`` seconds and when the last pair finishes (each update is an event in Prefect)."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total, self.every_s, self.last = total, every_s, time.monotonic()
        # sync_compatible: called outside an event loop it returns the UUID, not a coroutine
        self.id = cast(UUID, create_progress_artifact(progress=0.0, description=f"pairs finished of {total}"))

    def finished(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        update_progress_artifact(
            artifact_id=self.id,
            progress=100.0 * done / max(self.total, 1),
            description=f"{done} of {self.total} pairs finished",
        )


# A pair that finishes sooner shows in the flow's own progress artifact only. Each artifact
# created or updated is an event, printed by `prefect deployment run --watch` (111 lines for the
# 4-pair example job, 31 of them artifact events, when every chunk made its own artifacts at once).
LIVE_AFTER_S = 30.0


class _ChunkArtifacts:
    """What the Prefect UI shows of a chunk whose pair has run for ``LIVE_AFTER_S``: a progress
    artifact (pairs done, and the running pair's share) and the run's markdown artifact with the
    latest image (a data URI, which the UI renders; one key per flow run, so one collection, each
    image a new version). Both are paced: progress every ``every_s`` seconds, the image every
    ``image_every_s``. Never raises."""

    def __init__(self, pairs: list[PairJob], run_id: str, every_s: float = 15.0, image_every_s: float = 30.0) -> None:
        self.total, self.every_s, self.image_every_s = len(pairs), every_s, image_every_s
        self.key = "live-" + (run_id or hashlib.sha256("\n".join(p.name for p in pairs).encode()).hexdigest()[:16])
        self.last = self.last_image = -float("inf")
        self.shown: bytes | None = None  # the image the markdown artifact shows
        self.seconds = 0.0
        self.broken = False
        self.id: UUID | None = None  # the progress artifact, made when a pair first runs long enough to watch

    def _title(self) -> str:
        return f"stylize-pairs: {plural(self.total, 'pair')}"

    def step(self, name: str, index: int, step: StepInfo, live: LivePair) -> None:
        if self.broken or step.elapsed_s < LIVE_AFTER_S:
            return
        now = time.monotonic()
        if now - self.last >= self.every_s or step.scale_done and step.scale_index == step.num_scales - 1:
            self.last = now
            progress = 100.0 * (index + step.progress) / max(1, self.total)
            description = f"{self._title()}; {index} done, {name} at {100 * step.progress:.0f} %"
            artifact = self.id
            if artifact is None:
                self.id = self._guarded(
                    lambda: cast(UUID, create_progress_artifact(progress=progress, description=description))
                )
            else:
                self._guarded(
                    lambda: update_progress_artifact(artifact_id=artifact, progress=progress, description=description)
                )
        if (
            not self.broken
            and live.latest is not None
            and live.latest is not self.shown
            and now - self.last_image >= self.image_every_s
        ):
            self.last_image, self.shown = now, live.latest
            image = base64.b64encode(live.latest).decode()
            markdown = (
                f"**{name}**, {100 * step.progress:.0f} % (scale {step.scale_index + 1}/{step.num_scales}, "
                f"iteration {step.iteration})\n\n![latest](data:image/jpeg;base64,{image})"
            )
            self._guarded(
                lambda: create_markdown_artifact(
                    markdown=markdown, key=self.key, description="the latest image of a running pair"
                )
            )
        self.seconds += time.monotonic() - now

    def done(self, finished: int) -> None:
        began = time.monotonic()
        artifact = self.id
        if artifact is not None:
            self._guarded(
                lambda: update_progress_artifact(
                    artifact_id=artifact,
                    progress=100.0 * finished / max(1, self.total),
                    description=f"{self._title()}; {finished} done",
                )
            )
        self.seconds += time.monotonic() - began

    def take_seconds(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def _guarded(self, action: Callable[[], T]) -> T | None:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - the UI's view must never fail a pair
            if not self.broken:
                get_run_logger().warning("live artifacts: %s; the chunk goes on without them", exc)
            self.broken, self.id = True, None
            return None


@task(
    name="write-summary", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient
)
def write_summary(settings: BatchSettings, summary: RunSummary) -> str:
    """``summary.json`` (the latest run), then the run's own copy in the history (``runs/``, listed
    by ``nst runs``). A history copy that cannot be written is a warning: the summary is there."""
    data = json_bytes(summary.to_json())
    uri = settings.layout.uri(SUMMARY_NAME)
    storage_for(uri).write_bytes(uri, data, "application/json")
    if summary.started_at:
        kept = settings.layout.uri(run_summary_name(summary.started_at, summary.run_id))
        try:
            storage_for(kept).write_bytes(kept, data, "application/json")
        except StorageError as exc:
            get_run_logger().warning(
                "the run's copy in the history was not written (nst runs will not list it): %s", exc
            )
    return uri


@task(
    name="build-gallery", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient
)
def gallery(output_root: str) -> str:
    return build_gallery(output_root)
