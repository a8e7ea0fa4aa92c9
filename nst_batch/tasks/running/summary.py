"""A run's summary made from its pairs' rows (the record itself, :class:`RunSummary`, is in
nst_batch.tasks.pair.records): its counts, the style targets it computed or read from the cache, its
failures, the spread of its quality per style, and the one line and the table that say it."""

from __future__ import annotations

import datetime
import statistics
import time
from typing import Any

from nst_batch.tasks.pair.done import NOT_RUN
from nst_batch.tasks.pair.records import CacheUse, Failure, PairRow, RunSummary, Status, shown_quality
from nst_batch.tasks.planning.jobs import Plan


def summarize(plan: Plan, rows: list[PairRow], style_rows: list[CacheUse], began: float) -> RunSummary:
    """The run's summary from its pairs' rows (in the plan's order) and its style tasks' rows."""
    count = {status.value: sum(r.status == status for r in rows) for status in Status}
    summary = RunSummary(
        manifest=plan.source,
        output=plan.settings.output_root,
        run_id=plan.settings.run_id,
        started_at=_iso(began),
        finished_at=_iso(time.time()),
        counts={"planned": len(plan.pairs), **count},
        style_targets=_count_targets(rows, style_rows),
        failures=[Failure(r.name, r.content, r.styles, r.reason) for r in rows if r.status == Status.FAILED],
        pairs=rows,
        wall_time_s=round(time.time() - began, 3),
        quality=quality_spread(rows),
        notes=[str(note) for note in plan.notes],
    )
    _stopped_early(summary)
    return summary


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")


def _targets_made_here(rows: list[PairRow], style_rows: list[CacheUse]) -> set[str]:
    """Keys of the style targets this run computed (in a style task, or inside a pair)."""
    return {r.key for r in style_rows if not r.hit} | {k for r in rows for k in r.computed_keys}


def _count_targets(rows: list[PairRow], style_rows: list[CacheUse]) -> dict[str, int]:
    """Per pair and for the run, the same classification: a target this run computed counts as
    computed (also for the pairs that then read it from the cache), any other as from the cache."""
    made = _targets_made_here(rows, style_rows)
    used = {r.key for r in style_rows}
    for row in rows:
        used.update(row.target_keys)
        row.targets_computed = sum(k in made for k in row.target_keys)
        row.targets_cached = sum(k not in made for k in row.target_keys)
    return {"computed": len(made), "from_cache": len(used - made)}


def _stopped_early(summary: RunSummary) -> None:
    """One warning when the output root stopped taking files and the pairs after it were not run."""
    not_run = [f for f in summary.failures if f.reason.startswith(NOT_RUN)]
    if not_run:
        why = not_run[0].reason[len(NOT_RUN) :].strip(" ()")
        summary.warn(f"stopped early: the output root takes no more files ({why}); {len(not_run)} pairs were not run")


def headline(summary: RunSummary) -> str:
    c = summary.counts
    return (
        f"{c['planned']} pairs planned: {c['produced']} produced, {c['skipped']} skipped, {c['failed']} failed; "
        f"style targets: {targets_in_words(summary.style_targets)}"
    )


def targets_in_words(targets: dict[str, int]) -> str:
    """What happened to the style targets, said plainly: ``2 computed``, ``2 read from the cache
    (made by earlier runs)``, ``none needed (every pair was done earlier)``."""
    computed, cached = targets["computed"], targets["from_cache"]
    if not computed and not cached:
        return "none needed (every pair was done earlier or failed first)"
    parts = [f"{computed} computed"] if computed else []
    if cached:
        parts.append(f"{cached} read from the cache (made by earlier runs)")
    return ", ".join(parts)


def table(rows: list[PairRow]) -> list[dict[str, Any]]:
    """The summary as the rows of a Prefect table artifact."""
    return [
        {
            "pair": r.name,
            "status": r.status.value,
            "output": r.output,
            "loss": f"{r.final_losses['total']:.4g}" if r.final_losses else "",
            "seconds": r.wall_time_s if r.wall_time_s is not None else "",
            "reason": r.reason,
        }
        for r in rows
    ] or [{"pair": "-", "status": "no pairs"}]


def quality_spread(rows: list[PairRow]) -> dict[str, dict[str, Any]]:
    """Per style (or blend), over its pairs with an output (produced or skipped): the spread of
    the content distance, the style gain and the distribution gain at gallery scale (each pair's smallest measured side,
    256 px for larger outputs), as min / median / max. Where a style's spread is wide, its
    parameters suit some photos and not others."""
    by_style: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        shown = shown_quality(row.quality) if row.status != Status.FAILED else None
        if shown is not None:
            side, content, style_gain = shown
            figures = {"content": content, "style_gain": style_gain}
            swd_gain = (row.quality or {})[str(side)].get("swd_gain")  # sidecars from before it was measured lack it
            if isinstance(swd_gain, int | float):
                figures["swd_gain"] = float(swd_gain)
            by_style.setdefault("+".join(row.style_names), []).append(figures)
    out: dict[str, dict[str, Any]] = {}
    for style, pairs in by_style.items():
        out[style] = {"pairs": len(pairs)}
        for measure in ("content", "style_gain", "swd_gain"):
            values = sorted(f[measure] for f in pairs if measure in f)
            if values:
                out[style][measure] = {
                    "min": values[0],
                    "median": round(statistics.median(values), 4),
                    "max": values[-1],
                }
    return out
