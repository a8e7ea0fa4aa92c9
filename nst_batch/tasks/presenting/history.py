"""An output root's run history: every run's summary, kept under ``runs/`` (see
nst_batch.tasks.output.layout), read back for ``nst runs``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nst_batch.tasks.errors import InputError, StorageError
from nst_batch.tasks.output.layout import RUNS_DIR, SUMMARY_NAME
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.presenting.progress import format_duration


@dataclass(frozen=True)
class RunEntry:
    started_at: str  # ISO 8601, UTC; "" for a summary written before runs were kept
    finished_at: str
    manifest: str
    run_id: str  # the Prefect flow run's id
    counts: dict[str, int]
    failures: list[dict[str, Any]]
    wall_time_s: float
    uri: str  # the summary this entry was read from

    @classmethod
    def from_summary(cls, summary: dict[str, Any], uri: str) -> RunEntry:
        return cls(str(summary.get("started_at", "")), str(summary.get("finished_at", "")), str(summary.get("manifest", "")),
                   str(summary.get("run_id", "")), {k: int(v) for k, v in summary.get("counts", {}).items()},
                   list(summary.get("failures", [])), float(summary.get("wall_time_s", 0.0)), uri)


def list_runs(root: str) -> list[RunEntry]:
    """The runs recorded at ``root``, oldest first; a root written before runs were kept shows its
    one ``summary.json``. Unreadable entries are skipped (a run being written, a stray file)."""
    storage = storage_for(root)
    try:
        kept = [u for u in storage.list(join(root, RUNS_DIR)) if u.endswith(".json")]
    except StorageError as exc:
        raise InputError(f"cannot list {root}: {exc}") from None
    entries = [e for e in (_read(storage, uri) for uri in kept) if e is not None]
    if not entries:
        latest = _read(storage, join(root, SUMMARY_NAME))
        if latest is None:
            raise InputError(f"no runs recorded in {root} (no {RUNS_DIR}/ and no {SUMMARY_NAME}); run nst run with this output first")
        entries = [latest]
    return sorted(entries, key=lambda e: (e.started_at, e.uri))


def _read(storage: Any, uri: str) -> RunEntry | None:
    try:
        summary = json.loads(storage.read_bytes(uri))
    except (FileNotFoundError, StorageError, ValueError):
        return None
    return RunEntry.from_summary(summary, uri) if isinstance(summary, dict) else None


def runs_table(entries: list[RunEntry]) -> list[str]:
    """One line a run: when, how long, the counts, the flow run, the manifest, and its failures' first reason."""
    lines = [f"{'started (UTC)':<20} {'took':>8} {'planned':>7} {'made':>5} {'skipped':>7} {'failed':>6}  {'flow run':<36}  manifest"]
    for e in entries:
        c = e.counts
        when = e.started_at.replace("T", " ").replace("+00:00", "")[:19] or "(before history)"
        lines.append(f"{when:<20} {format_duration(e.wall_time_s):>8} {c.get('planned', 0):>7} {c.get('produced', 0):>5} {c.get('skipped', 0):>7} "
                     f"{c.get('failed', 0):>6}  {e.run_id or '-':<36}  {e.manifest}")
        if e.failures:
            first = e.failures[0]
            more = f" (and {len(e.failures) - 1} more)" if len(e.failures) > 1 else ""
            lines.append(f"{'':<20} failed: {first.get('name', '?')}: {first.get('reason', '')[:120]}{more}")
    return lines

