"""The `stylize-batch` flow: manifest -> style targets (once per style) -> pairs -> summary and gallery.

It composes tasks, and keeps the run's own book: which pairs a lost task or a failed style took
with it (their rows say why), the summary's last words (a summary or a gallery that could not be
written is a warning in it, the summary rewritten), the flow run's final state.
:func:`stylize_batch` is the deployment's entry (it plans and checks); :func:`stylize_checked` the
same flow for the plan ``nst run`` made and checked; :func:`run_plan` runs a plan.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.states import Completed, Failed, State
from prefect.task_runners import TaskRunner

from nst_batch.tasks.output.layout import SUMMARY_NAME
from nst_batch.tasks.pair.done import failed_row, likely_done, reset_roots_down, written_by_this_run
from nst_batch.tasks.pair.records import CacheUse, PairRow, StyleFailed
from nst_batch.tasks.planning.jobs import PairJob, Plan
from nst_batch.tasks.presenting.live import LiveGallery
from nst_batch.tasks.presenting.progress import batch_planned, pair_finished, pairs_finished
from nst_batch.tasks.running.cluster import check_runner_sees, failure_reason, follow_pairs
from nst_batch.tasks.running.prefect_runs import tag_this_flow_run
from nst_batch.tasks.running.prefect_tasks import (
    RunProgress,
    decode_inputs,
    gallery,
    plan_batch,
    style_targets,
    stylize_pairs,
    write_summary,
)
from nst_batch.tasks.running.preflight import CheckedPlan
from nst_batch.tasks.running.runners import RunnerFromSettings, runner_slots
from nst_batch.tasks.running.scheduling import bucket_keys, chunk_name, chunks, target_group
from nst_batch.tasks.running.summary import RunSummary, headline, summarize, table

FLOW_NAME = "stylize-batch"


_FLOW_OPTIONS: dict[str, Any] = dict(
    name=FLOW_NAME, task_runner=RunnerFromSettings(), log_prints=False, validate_parameters=True
)


@flow(**_FLOW_OPTIONS)
def stylize_batch(
    manifest: str, output: str | None = None, force: bool = False, verify: bool = False, decode_check: bool = False
) -> State:
    """Stylize every pair of a manifest. Fails (after finishing every other pair and writing the
    summary and the gallery) when any pair failed. ``verify``: a finished pair is skipped only
    once its output hashes as its sidecar records (by default: its size and header).
    ``decode_check``: before any work, decode every input (``nst validate --decode``) and fail
    the run, naming each image that does not decode (a nightly job turns it on)."""
    return _stylize(manifest, output, force, verify, decode_check, None)


def stylize_checked(checked: CheckedPlan) -> Flow[..., State]:
    """The `stylize-batch` flow for a plan that ``nst run`` made and checked before Prefect
    started: the same name and parameters, and a run of it neither plans nor checks again (a
    5.5 MB manifest took a minute to expand). The plan rides in this closure, not in a parameter:
    Prefect stores a flow run's parameters in its database, and a plan can hold 100,000 pairs."""

    def checked_run(
        manifest: str, output: str | None = None, force: bool = False, verify: bool = False, decode_check: bool = False
    ) -> State:
        if (manifest, output) != (checked.manifest, checked.output):
            raise ValueError(f"this flow runs the plan of {checked.manifest}, not of {manifest}")
        return _stylize(manifest, output, force, verify, decode_check, checked)

    checked_run.__doc__ = stylize_batch.fn.__doc__
    return flow(**_FLOW_OPTIONS)(checked_run)


def _stylize(
    manifest: str, output: str | None, force: bool, verify: bool, decode_check: bool, checked: CheckedPlan | None
) -> State:
    began = time.time()
    reset_roots_down()  # a disk found full by an earlier run in this process may have room now
    tag_this_flow_run()  # so that a later run can tell, if this process is killed, that this run crashed
    plan = _this_run(plan_batch(manifest, output, checked.plan if checked else None), verify)
    check_runner_sees(
        _runner(), plan, checked.cluster if checked else None
    )  # a remote cluster's workers see every path
    if decode_check:
        decode_inputs(plan)
    return run_plan(plan, force, began)


def run_plan(plan: Plan, force: bool = False, began: float | None = None) -> State:
    """Run a checked plan inside this flow run: style targets, pairs, summary, gallery."""
    began = time.time() if began is None else began
    runner = _runner()
    slots = runner_slots(runner)
    follow_pairs(runner, plan.settings.run_id)  # a Dask worker's pairs report as each finishes
    batch_planned(
        len(plan.pairs), likely_done(plan.pairs, plan.settings, force), slots
    )  # the ETA counts only pairs that will run
    progress = RunProgress(len(plan.pairs))
    with LiveGallery(plan) as live:  # index.html shows pending, running and finished pairs while they run
        style_rows, style_failures = _style_targets(plan, force)
        rows = _pairs(plan, force, style_failures, progress, live, slots)
    summary = summarize(plan, rows, style_rows, began)
    summary.live_view_s = round(live.seconds + sum(r.live_s for r in rows), 3)
    # The summary first: it is what a failed gallery (a full disk, say) must not cost; and when it
    # cannot be written either, the run still returns it (nst run prints it).
    summary.summary_uri = _write_summary(plan, summary)
    summary.gallery = _gallery(plan, summary) if summary.summary_uri else None
    create_table_artifact(key="stylize-batch-summary", table=table(rows), description=headline(summary))
    get_run_logger().info(headline(summary))
    # The flow's result is the summary's JSON form, as summary.json holds it: what a caller of the
    # flow (nst run, a script, the Prefect UI) reads without importing this package's types.
    if summary.failed:
        return Failed(message=headline(summary), data=summary.to_json())
    return Completed(message=headline(summary), data=summary.to_json())


def _runner() -> TaskRunner[Any] | None:
    context = FlowRunContext.get()
    return context.task_runner if context is not None else None


def _this_run(plan: Plan, verify: bool = False) -> Plan:
    """The plan with this flow run's id in its settings: a pair's sidecar records it, so a chunk
    that runs again (its Dask worker died) counts what its first attempt produced as produced."""
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context is not None and context.flow_run is not None else ""
    return replace(plan, settings=replace(plan.settings, run_id=run_id, verify=verify))


def _write_summary(plan: Plan, summary: RunSummary) -> str | None:
    try:
        return write_summary(plan.settings, summary)
    except Exception as exc:  # the disk is full or read-only: the summary still goes back to the caller
        get_run_logger().warning(summary.warn(f"{SUMMARY_NAME} was not written: {' '.join(str(exc).split())}"))
        return None


def _gallery(plan: Plan, summary: RunSummary) -> str | None:
    """Build the gallery; if that fails, say so in the summary (rewritten) rather than fail the run."""
    try:
        return gallery(plan.settings.output_root)
    except Exception as exc:
        get_run_logger().warning(summary.warn(f"the gallery was not built: {' '.join(str(exc).split())}"))
        try:
            write_summary(plan.settings, summary)
        except Exception:
            pass  # the first summary stands
        return None


def _style_targets(plan: Plan, force: bool) -> tuple[list[CacheUse], dict[tuple[object, ...], str]]:
    futures: dict[tuple[object, ...], PrefectFuture[CacheUse | StyleFailed]] = {}
    for pair in plan.pairs:
        for style in pair.styles:
            group = target_group(pair, style.uri)
            if group is not None and group not in futures:
                futures[group] = style_targets.submit(style.uri, pair.config, plan.settings, force)
    wait(list(futures.values()))
    rows: list[CacheUse] = []
    failures: dict[tuple[object, ...], str] = {}
    for group, future in futures.items():
        try:
            row = future.result()
        except Exception as exc:  # the task itself broke (its worker died)
            failures[group] = failure_reason(exc)
            continue
        if isinstance(row, StyleFailed):
            failures[group] = row.reason
        else:
            rows.append(row)
    return rows, failures


def _pairs(
    plan: Plan,
    force: bool,
    style_failures: dict[tuple[object, ...], str],
    progress: RunProgress,
    live: LiveGallery,
    slots: int,
) -> list[PairRow]:
    rows: list[PairRow] = []
    todo: list[PairJob] = []
    for pair in plan.pairs:
        reasons = [style_failures[g] for s in pair.styles if (g := target_group(pair, s.uri)) in style_failures]
        if reasons:
            rows.append(failed_row(pair, plan.settings, f"style: {reasons[0]}"))
            pair_finished(rows[-1])
        else:
            todo.append(pair)
    live.add(rows)
    futures: dict[PrefectFuture[list[PairRow]], list[PairJob]] = {}
    for chunk in chunks(todo, slots, bucket_keys(todo, plan.settings)):  # a bucket's pairs side by side: they batch
        futures[stylize_pairs.with_options(task_run_name=chunk_name(chunk)).submit(chunk, plan.settings, force)] = chunk
    progress.finished(len(rows))
    for future in as_completed(list(futures)):
        chunk = futures.pop(future)  # let go of it: Dask recomputes a lost result that a client still holds
        try:
            done = future.result()
        except Exception as exc:  # the task itself broke (workers died, the cluster went away): every pair of it failed
            done = [
                written_by_this_run(pair, plan.settings) or failed_row(pair, plan.settings, failure_reason(exc))
                for pair in chunk
            ]
        rows += done
        live.add(done)
        pairs_finished(done)  # rows reported in this process already are not reported twice
        progress.finished(len(rows))
    order = {p.name: i for i, p in enumerate(plan.pairs)}
    return sorted(rows, key=lambda r: order[r.name])


if __name__ == "__main__":
    import sys

    stylize_batch(manifest=sys.argv[1])
