"""The gallery's page as data, read from an output root: which photos (rows) and styles (columns),
and each pair's cell (produced, failed, running, pending, interrupted, unreadable), with what its
sidecar records. Nothing here writes or renders; ``gallery_html`` renders a :class:`Page` and
``gallery`` writes it.

The rows and columns follow the last run's ``summary.json`` (its rows follow the plan), then the
outputs of earlier runs that it does not list; a run in progress reads its plan and live files.
Every sidecar is anyone's text: only well-typed values are kept (``PairRecord.from_json``).
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass, field
from typing import Any

from nst_batch.tasks.basics import plural
from nst_batch.tasks.errors import InputError, StorageError
from nst_batch.tasks.output.layout import LIVE_DIR, LIVE_RUN, SUMMARY_NAME, live_state
from nst_batch.tasks.output.storage import Storage, join, storage_for
from nst_batch.tasks.pair.image_files import OUTPUT_FORMATS
from nst_batch.tasks.pair.records import PairRecord, PairRow, RunSummary, Status, json_text
from nst_batch.tasks.planning.jobs import Plan
from nst_batch.tasks.presenting.run_marker import ended_run


@dataclass
class Cell:
    name: str
    content: str
    style: str  # the column's label: a style's name, or a blend with its weights
    status: str  # produced | skipped | failed
    reason: str = ""
    output: str = ""  # relative to the root
    sidecar: str = ""
    record: PairRecord | None = None  # its sidecar, read back
    live: dict[str, Any] = field(default_factory=dict)  # a running pair's live state (nst_batch.tasks.presenting.live)
    sweep: dict[str, Any] = field(default_factory=dict)  # a sweep point's values; empty: not swept
    sweep_of: str = ""  # the swept pair's name without the values


@dataclass(frozen=True)
class Interrupted:
    """A run that ended without its summary (Ctrl-C, SIGTERM, a crash, a kill): when its live view
    was last written, and how far it got (None: not known)."""

    when: str
    finished: int | None
    planned: int | None


@dataclass
class Page:
    contents: list[str] = field(default_factory=list)  # content URIs, in order
    styles: dict[str, list[str]] = field(default_factory=dict)  # column label -> style URIs
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # the grid: a swept pair's first point
    sweeps: dict[tuple[str, str], list[Cell]] = field(default_factory=dict)  # (content, style) -> its points, in order
    interrupted: Interrupted | None = None  # a run that ended without its summary
    run: RunSummary | None = None  # the last run's summary (its header): when, manifest, counts, failures

    def add(self, cell: Cell, style_uris: list[str]) -> None:
        if cell.content not in self.contents:
            self.contents.append(cell.content)
        self.styles.setdefault(cell.style, style_uris)
        key = (cell.content, cell.style)
        if not cell.sweep:
            self.cells[key] = cell
            return
        points = self.sweeps.setdefault(key, [])
        if all(p.name != cell.name for p in points):
            points.append(cell)
        self.cells.setdefault(key, points[0])

    def all_cells(self) -> list[Cell]:
        """Every output shown: the grid's cells and every sweep point."""
        return [c for c in self.cells.values() if not c.sweep] + [c for points in self.sweeps.values() for c in points]

    def counts(self) -> str:
        """``12 images and 1 failed: 4 photos × 3 styles``: what the page shows, counted."""
        shown = self.all_cells()
        count = {status: sum(c.status == status for c in shown) for status in ("failed", "running", "pending")}
        text = plural(len(shown) - sum(count.values()), "image")
        for status, n in count.items():
            text += f" and {n} {status}" if n else ""
        return f"{text}: {plural(len(self.contents), 'photo')} × {plural(len(self.styles), 'style')}"


def style_label(names: list[str], blend: list[float] | None = None) -> str:
    """``starry``, or ``starry 0.7 + scream 0.3`` for a blend."""
    if not names:
        return "(no style)"
    if len(names) == 1:
        return names[0]
    weights = blend or [1 / len(names)] * len(names)
    return " + ".join(f"{n} {w:.2g}" for n, w in zip(names, weights, strict=False))


# A produced pair's cell and its style URIs (a column's), read from its sidecar.
SidecarCell = tuple[Cell, list[str]]

OUTPUT_EXTENSIONS = tuple(OUTPUT_FORMATS)
UNREADABLE = "unreadable sidecar"


def _relative(root: str, uri: str) -> str:
    prefix = root.rstrip("/") + "/"
    return uri[len(prefix) :] if uri.startswith(prefix) else uri


def _read_json(storage: Storage, uri: str) -> dict[str, Any] | None:
    try:
        data = json.loads(storage.read_bytes(uri))
    except (ValueError, FileNotFoundError, StorageError):
        return None
    return data if isinstance(data, dict) else None


def _output_of(stem: str, files: set[str]) -> str:
    """The output the run wrote beside sidecar ``stem``.json (by the layout, never by the sidecar's text)."""
    return next((f"{stem}.{ext}" for ext in OUTPUT_EXTENSIONS if f"{stem}.{ext}" in files), "")


def _cell_from_sidecar(root: str, rel: str, meta: Any, files: set[str] | None = None) -> SidecarCell | None:
    """A produced pair's cell from its sidecar at ``rel`` (JSON). The cell's name and links come
    from the sidecar's own file name; of its text only well-typed values are kept (PairRecord.from_json).
    A file that is no sidecar of ours gives None; one of ours of the wrong shape an unreadable cell."""
    stem = rel[: -len(".json")]
    try:
        record = PairRecord.from_json(meta)
    except ValueError:
        return Cell(
            stem, f"(unreadable: {rel})", UNREADABLE, "unreadable", reason=f"{UNREADABLE}: {rel}", sidecar=rel
        ), []
    if record is None:
        return None
    cell = Cell(
        stem,
        record.content.uri or "?",
        style_label([s.name for s in record.styles], record.blend()),
        "produced",
        output=_output_of(stem, files or set()),
        sidecar=rel,
        record=record,
        sweep=dict(record.sweep),
        sweep_of=record.sweep_of,
    )
    return cell, [s.uri for s in record.styles]


def collect(root: str) -> tuple[Page, set[str]]:
    """The page's cells from the last summary (in plan order, failures included) and every sidecar
    directly under ``root``; also every file under ``root``, relative, to link only what exists."""
    storage = storage_for(root)
    files = {_relative(root, uri) for uri in storage.list(root)}
    sidecars = {}
    for rel in sorted(files):
        if "/" not in rel and rel.endswith(".json") and rel != SUMMARY_NAME:
            meta = _read_json(storage, join(root, rel))
            found = _cell_from_sidecar(root, rel, meta, files) if meta else None
            if found:
                sidecars[found[0].name] = found
    if not sidecars and SUMMARY_NAME not in files:
        if storage.entry_kind(root, image_like=False) != "folder":
            raise InputError(f"{root}: no such folder; run nst run with this output first")
        raise InputError(
            f"no stylized outputs in {root} (no sidecars, no summary.json); run nst run with this output first"
        )
    page = Page()
    page.interrupted = _interrupted_run(root, storage, files, sidecars)
    page.run = _read_summary(storage, join(root, SUMMARY_NAME)) if SUMMARY_NAME in files else None
    ended = _seconds(page.run.finished_at) if page.run is not None else None
    for row in page.run.pairs if page.run is not None else []:  # a summary of another shape has none; the sidecars stay
        _add_row(page, row, sidecars, ended)
    for cell, uris in sidecars.values():  # outputs of earlier runs, not in the last summary
        if (cell.content, cell.style) not in page.cells or (cell.sweep and (cell.content, cell.style) in page.sweeps):
            page.add(cell, uris)
    return page, files


def _read_summary(storage: Storage, uri: str) -> RunSummary | None:
    try:
        return RunSummary.from_json(_read_json(storage, uri))
    except ValueError:  # not a summary: the sidecars still make the page
        return None


def _interrupted_run(
    root: str, storage: Storage, files: set[str], sidecars: dict[str, SidecarCell]
) -> Interrupted | None:
    """The run whose live view is still there though it no longer runs (Ctrl-C, SIGTERM, a crash,
    a kill): when it stopped and how far it got; its running pairs become 'interrupted' cells."""

    if LIVE_RUN not in files:
        return None
    marker = _read_json(storage, join(root, LIVE_RUN))
    if not ended_run(marker):
        return None
    marker = marker or {}
    for rel in sorted(files):
        if rel.startswith(f"{LIVE_DIR}/") and rel.endswith(".json") and rel != LIVE_RUN:
            state = _read_json(storage, join(root, rel)) or {}
            name = rel[len(LIVE_DIR) + 1 : -len(".json")]
            if name not in sidecars:
                cell = Cell(
                    name,
                    json_text(state.get("content"), name),
                    json_text(state.get("style"), "(interrupted)"),
                    "interrupted",
                    reason="interrupted: the run stopped while this pair ran",
                )
                sidecars[name] = (cell, [])
    updated, since = marker.get("updated"), marker.get("since")
    finished = marker.get("finished") if isinstance(marker.get("finished"), int) else None
    if isinstance(
        since, int | float
    ):  # the live view's count lags its last rendering: the sidecars since it began say more
        written = sum(_finished_since(cell.record, since) for cell, _ in sidecars.values())
        finished = max(finished or 0, written)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(updated)) if isinstance(updated, int | float) else ""
    planned = marker.get("planned")
    return Interrupted(when or "at an unknown time", finished, planned if isinstance(planned, int) else None)


def _finished_since(record: PairRecord | None, since: float) -> bool:
    when = _seconds(record.finished_at) if record is not None else None
    return when is not None and when >= since - 1


def _seconds(iso: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(iso).timestamp() if isinstance(iso, str) else None
    except ValueError:
        return None


def _add_row(page: Page, row: PairRow, sidecars: dict[str, SidecarCell], ended: float | None = None) -> None:
    """A summary row's cell: its sidecar's when it has one, else what the row says. A pair the
    summary's run failed but a later run finished (a run stopped by Ctrl-C before its summary)
    shows that later result."""
    status = row.status.value
    found = sidecars.pop(row.name, None)
    later = found is not None and ended is not None and _finished_since(found[0].record, ended + 2)
    if found is not None and (status != "failed" or later):
        cell, uris = found
        if cell.status != "unreadable":
            cell.status = "produced" if later and status == "failed" else status
        page.add(cell, uris)
        return
    styles = [u for u in row.styles if isinstance(u, str)]
    names = [json_text(n, "?") for n in row.style_names] or [u.rsplit("/", 1)[-1] for u in styles]
    blend = row.blend if row.blend and all(isinstance(w, int | float) for w in row.blend) else None
    page.add(
        Cell(
            row.name,
            row.content or "?",
            style_label(names, blend),
            status,
            reason=row.reason,
            sweep=dict(row.sweep or {}),
            sweep_of=row.sweep_of,
        ),
        styles,
    )


def _sidecar_cell(root: str, storage: Storage, row: PairRow, files: set[str]) -> SidecarCell | None:
    rel = _relative(root, row.sidecar)
    meta = _read_json(storage, row.sidecar) if rel in files and row.status != Status.FAILED else None
    return _cell_from_sidecar(root, rel, meta, files) if meta else None


def live_page(
    plan: Plan, finished: dict[str, PairRow], sidecars: dict[str, SidecarCell | None]
) -> tuple[Page, set[str]]:
    """The page of a run in progress: every planned pair, finished (as in the final page), running
    (from its live files) or pending, in plan order; and every file under the root. ``sidecars``:
    the finished pairs' cells read so far (filled in here)."""
    root = plan.settings.output_root
    storage = storage_for(root)
    files = {_relative(root, uri) for uri in storage.list(root)}
    page = Page()
    for pair in plan.pairs:
        row = finished.get(pair.name)
        if row is not None:
            if pair.name not in sidecars:
                sidecars[pair.name] = _sidecar_cell(root, storage, row, files)
            found = sidecars[pair.name]
            _add_row(page, row, {row.name: found} if found else {})
            continue
        state = _read_json(storage, join(root, live_state(pair.name))) if live_state(pair.name) in files else None
        page.add(
            Cell(
                pair.name,
                pair.content_uri,
                style_label(pair.style_names(), pair.blend()),
                "pending" if state is None else "running",
                live=state or {},
                sweep=dict(pair.sweep),
                sweep_of=pair.sweep_of,
            ),
            [s.uri for s in pair.styles],
        )
    return page, files
