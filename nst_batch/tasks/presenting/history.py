"""An output root's run history: every run's summary, kept under ``runs/`` (see
nst_batch.tasks.output.layout), read back for ``nst runs``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from nst_batch.tasks.errors import InputError, StorageError
from nst_batch.tasks.output.layout import RUNS_DIR, SUMMARY_NAME
from nst_batch.tasks.output.storage import Storage, join, storage_for
from nst_batch.tasks.pair.records import RunSummary
from nst_batch.tasks.presenting.progress import format_duration


@dataclass(frozen=True)
class RunEntry:
    summary: RunSummary
    uri: str  # the summary this entry was read from


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
            raise InputError(
                f"no runs recorded in {root} (no {RUNS_DIR}/ and no {SUMMARY_NAME}); run nst run with this output first"
            )
        entries = [latest]
    return sorted(entries, key=lambda e: (e.summary.started_at, e.uri))


def _read(storage: Storage, uri: str) -> RunEntry | None:
    try:
        return RunEntry(RunSummary.from_json(json.loads(storage.read_bytes(uri))), uri)
    except (FileNotFoundError, StorageError, ValueError):  # ValueError: no JSON, or no summary
        return None


def runs_table(entries: list[RunEntry]) -> list[str]:
    """One line a run: when, how long, the counts, the flow run, the manifest, and its failures' first reason."""
    lines = [
        f"{'started (UTC)':<20} {'took':>8} {'planned':>7} {'made':>5} {'skipped':>7} {'failed':>6}  "
        f"{'flow run':<36}  manifest"
    ]
    for e in (entry.summary for entry in entries):
        c = e.counts
        when = e.started_at.replace("T", " ").replace("+00:00", "")[:19] or "(before history)"
        lines.append(
            f"{when:<20} {format_duration(e.wall_time_s):>8} {c.get('planned', 0):>7} {c.get('produced', 0):>5} "
            f"{c.get('skipped', 0):>7} "
            f"{c.get('failed', 0):>6}  {e.run_id or '-':<36}  {e.manifest}"
        )
        if e.failures:
            first = e.failures[0]
            more = f" (and {len(e.failures) - 1} more)" if len(e.failures) > 1 else ""
            lines.append(f"{'':<20} failed: {first.name or '?'}: {first.reason[:120]}{more}")
    return lines
