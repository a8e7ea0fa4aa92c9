"""The `stylize-batch` flow: manifest -> style targets (once per style) -> pairs -> summary and gallery."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.states import Completed, Failed, State

from nst_batch.tasks.pair.produce import NOT_RUN, likely_done, reset_roots_down, shares_targets, written_by_this_run
from nst_batch.tasks.planning.plan import PairJob, Plan
from nst_batch.tasks.presenting.live import LiveGallery
from nst_batch.tasks.presenting.progress import batch_planned, pair_finished, pairs_finished
from nst_batch.tasks.running.cluster import check_runner_sees, failure_reason, follow_pairs
from nst_batch.tasks.running.prefect_runs import tag_this_flow_run
from nst_batch.tasks.running.prefect_tasks import RunProgress, gallery, plan_batch, style_targets, stylize_pairs, write_summary
from nst_batch.tasks.running.runners import make_task_runner, runner_slots

FLOW_NAME = "stylize-batch"


@flow(name=FLOW_NAME, task_runner=make_task_runner(), log_prints=False, validate_parameters=True)
def stylize_batch(manifest: str, output: str | None = None, force: bool = False, verify: bool = False) -> State:
    """Stylize every pair of a manifest. Fails (after finishing every other pair and writing the
    summary and the gallery) when any pair failed. ``verify``: a finished pair is skipped only
    once its output hashes as its sidecar records (by default: its size and header)."""
    began = time.time()
    reset_roots_down()  # a disk found full by an earlier run in this process may have room now
    tag_this_flow_run()  # so that a later run can tell, if this process is killed, that this run crashed
    plan = _this_run(plan_batch(manifest, output), verify)
    check_runner_sees(_runner(), plan)  # a remote cluster's workers see every path the plan names
    slots = runner_slots(_runner())
    follow_pairs(_runner(), plan.settings.run_id)  # a Dask worker's pairs report as each finishes
    batch_planned(len(plan.pairs), likely_done(plan.pairs, plan.settings, force), slots)  # the ETA counts only pairs that will run
    progress = RunProgress(len(plan.pairs))
    with LiveGallery(plan) as live:  # index.html shows pending, running and finished pairs while they run
        style_rows, style_failures = _style_targets(plan, force)
        rows = _pairs(plan, force, style_failures, progress, live, slots)
    summary = _summary(plan, rows, style_rows, began)
    summary["live_view_s"] = round(live.seconds + sum(r.get("live_s", 0.0) for r in rows), 3)
    _stopped_early(summary)
    # The summary first: it is what a failed gallery (a full disk, say) must not cost; and when it
    # cannot be written either, the run still returns it (nst run prints it).
    summary["summary_uri"] = _write_summary(plan, summary)
    summary["gallery"] = _gallery(plan, summary) if summary["summary_uri"] else None
    create_table_artifact(key="stylize-batch-summary", table=_table(rows), description=_headline(summary))
    get_run_logger().info(_headline(summary))
    if summary["counts"]["failed"]:
        return Failed(message=_headline(summary), data=summary)
    return Completed(message=_headline(summary), data=summary)


def _runner() -> Any:
    context = FlowRunContext.get()
    return context.task_runner if context is not None else None


def _this_run(plan: Plan, verify: bool = False) -> Plan:
    """The plan with this flow run's id in its settings: a pair's sidecar records it, so a chunk
    that runs again (its Dask worker died) counts what its first attempt produced as produced."""
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context is not None and context.flow_run is not None else ""
    return replace(plan, settings=replace(plan.settings, run_id=run_id, verify=verify))


def _stopped_early(summary: dict[str, Any]) -> None:
    """One warning when the output root stopped taking files and the pairs after it were not run."""
    not_run = [f for f in summary["failures"] if f["reason"].startswith(NOT_RUN)]
    if not_run:
        why = not_run[0]["reason"][len(NOT_RUN):].strip(" ()")
        summary.setdefault("warnings", []).append(f"stopped early: the output root takes no more files ({why}); "
                                                  f"{len(not_run)} pairs were not run")


def _write_summary(plan: Plan, summary: dict[str, Any]) -> str | None:
    try:
        return write_summary(plan.settings, summary)
    except Exception as exc:  # the disk is full or read-only: the summary still goes back to the caller
        summary.setdefault("warnings", []).append(f"summary.json was not written: {' '.join(str(exc).split())}")
        get_run_logger().warning(summary["warnings"][-1])
        return None


def _gallery(plan: Plan, summary: dict[str, Any]) -> str | None:
    """Build the gallery; if that fails, say so in the summary (rewritten) rather than fail the run."""
    try:
        return gallery(plan.settings.output_root)
    except Exception as exc:
        summary.setdefault("warnings", []).append(f"the gallery was not built: {' '.join(str(exc).split())}")
        get_run_logger().warning(summary["warnings"][-1])
        try:
            write_summary(plan.settings, summary)
        except Exception:
            pass  # the first summary stands
        return None


def _target_group(pair: PairJob, style_uri: str) -> tuple[str, str] | None:
    """Pairs whose targets for a style are identical share one style task; luminance-matched
    targets depend on the content and are made inside the pair task instead."""
    cfg = pair.config()
    if not shares_targets(cfg):
        return None
    shape = (cfg.style_sides(), cfg.style_layers, cfg.pooling, cfg.precision, cfg.preserve_color)
    return style_uri, repr(shape)


def _style_targets(plan: Plan, force: bool) -> tuple[list[dict[str, Any]], dict[tuple[str, str], str]]:
    futures: dict[tuple[str, str], PrefectFuture[dict[str, Any]]] = {}
    for pair in plan.pairs:
        for style in pair.styles:
            group = _target_group(pair, style.uri)
            if group is not None and group not in futures:
                futures[group] = style_targets.submit(style.uri, pair.params, plan.settings, force)
    wait(list(futures.values()))
    rows, failures = [], {}
    for group, future in futures.items():
        try:
            row = future.result()
        except Exception as exc:  # the task itself broke (its worker died)
            failures[group] = failure_reason(exc)
            continue
        if "failed" in row:
            failures[group] = row["failed"]
        else:
            rows.append(row)
    return rows, failures


def chunk_size(pairs: int, workers: int) -> int:
    """Pairs per Prefect task. One task per pair costs ~20 ms of orchestration each (task run
    records, state changes, logs through the API) and grows Prefect's database by ~20 KB per pair
    per run; a collection of 10,000 pairs then spends minutes on Prefect alone. Chunks keep every
    worker busy with about 8 tasks each (so a slow chunk does not leave the others idle at the
    end), and at most 64 pairs, so progress and retries stay fine-grained."""
    return max(1, min(MAX_CHUNK, math.ceil(pairs / (max(1, workers) * 8))))


MAX_CHUNK = 64


def _pairs(plan: Plan, force: bool, style_failures: dict[tuple[str, str], str], progress: RunProgress, live: LiveGallery,
           slots: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    todo: list[PairJob] = []
    for pair in plan.pairs:
        reasons = [style_failures[g] for s in pair.styles if (g := _target_group(pair, s.uri)) in style_failures]
        if reasons:
            rows.append(_failed_row(plan, pair, f"style: {reasons[0]}"))
            pair_finished(rows[-1])
        else:
            todo.append(pair)
    live.add(rows)
    size = chunk_size(len(todo), slots)
    futures: dict[PrefectFuture[list[dict[str, Any]]], list[PairJob]] = {}
    for start in range(0, len(todo), size):
        chunk = todo[start:start + size]
        futures[stylize_pairs.with_options(task_run_name=_chunk_name(chunk)).submit(chunk, plan.settings, force)] = chunk
    progress.finished(len(rows))
    for future in as_completed(list(futures)):
        chunk = futures.pop(future)  # let go of it: Dask recomputes a lost result that a client still holds
        try:
            done = future.result()
        except Exception as exc:  # the task itself broke (workers died, the cluster went away): every pair of it failed
            done = [written_by_this_run(pair, plan.settings) or _failed_row(plan, pair, failure_reason(exc)) for pair in chunk]
        rows += done
        live.add(done)
        pairs_finished(done)  # rows reported in this process already are not reported twice
        progress.finished(len(rows))
    order = {p.name: i for i, p in enumerate(plan.pairs)}
    return sorted(rows, key=lambda r: order[r["name"]])


def _chunk_name(chunk: list[PairJob]) -> str:
    return f"stylize {chunk[0].name}" if len(chunk) == 1 else f"stylize {len(chunk)} pairs: {chunk[0].name} .. {chunk[-1].name}"


def _failed_row(plan: Plan, pair: PairJob, reason: str) -> dict[str, Any]:
    return {**pair.row(plan.settings), "status": "failed", "reason": reason, "target_keys": [], "computed_keys": []}


def _targets_made_here(rows: list[dict[str, Any]], style_rows: list[dict[str, Any]]) -> set[str]:
    """Keys of the style targets this run computed (in a style task, or inside a pair)."""
    return {r["key"] for r in style_rows if not r["cached"]} | {k for r in rows for k in r.pop("computed_keys", [])}


def _count_targets(rows: list[dict[str, Any]], style_rows: list[dict[str, Any]]) -> dict[str, int]:
    """Per pair and for the run, the same classification: a target this run computed counts as
    computed (also for the pairs that then read it from the cache), any other as from the cache."""
    made = _targets_made_here(rows, style_rows)
    used = {r["key"] for r in style_rows}
    for row in rows:
        keys = row.pop("target_keys", [])
        used.update(keys)
        row["targets_computed"] = sum(k in made for k in keys)
        row["targets_cached"] = sum(k not in made for k in keys)
    return {"computed": len(made), "from_cache": len(used - made)}


def _summary(plan: Plan, rows: list[dict[str, Any]], style_rows: list[dict[str, Any]], began: float) -> dict[str, Any]:
    count = {status: sum(r["status"] == status for r in rows) for status in ("produced", "skipped", "failed")}
    targets = _count_targets(rows, style_rows)
    return {
        "manifest": plan.source,
        "output": plan.settings.output_root,
        "counts": {"planned": len(plan.pairs), **count},
        "done_earlier": count["skipped"],  # skipped because an earlier run made them: their images are in the gallery
        "style_targets": targets,
        "failures": [{"name": r["name"], "content": r["content"], "styles": r["styles"], "reason": r["reason"]} for r in rows if r["status"] == "failed"],
        "pairs": rows,
        "wall_time_s": round(time.time() - began, 3),
    }


def _headline(summary: dict[str, Any]) -> str:
    c, t = summary["counts"], summary["style_targets"]
    return (f"{c['planned']} pairs planned: {c['produced']} produced, {c['skipped']} skipped, {c['failed']} failed; "
            f"style targets: {t['computed']} computed, {t['from_cache']} from cache")


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"pair": r["name"], "status": r["status"], "output": r["output"],
             "loss": f"{r['final_losses']['total']:.4g}" if r.get("final_losses") else "",
             "seconds": r.get("wall_time_s", ""), "reason": r.get("reason", "")} for r in rows] or [{"pair": "-", "status": "no pairs"}]


if __name__ == "__main__":
    import sys

    stylize_batch(manifest=sys.argv[1])
