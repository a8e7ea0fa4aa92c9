"""``index.html`` at an output root: a page a person browses, with no JavaScript.

Rows are contents and columns are styles, both in manifest order (from the last run's
``summary.json``, whose rows follow the plan), each headed by a thumbnail of the original photo or
painting. A cell is the stylized thumbnail, linking to the full image, with its parameters,
losses and timing in a ``<details>`` below it (and on hover); a failed pair's cell says why.
A swept pair (a manifest ``sweep:``) shows its first point in the grid and all of its points
side by side below it, in the sweep's order, labelled with their values, beside the photo and the
painting. Outputs of earlier runs that the last summary does not list are shown after it. Every
link is relative, so the page works from a local folder and from S3 alike.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from typing import Any

from tasks.errors import InputError, StorageError
from tasks.plan import SUMMARY_NAME
from tasks.storage import is_s3, join, storage_for

GALLERY_NAME = "index.html"
THUMBS_DIR = "thumbs"
ORIGINALS_DIR = "thumbs/originals"


def pair_thumb(name: str) -> str:
    """Where a pair's thumbnail lives, relative to the output root."""
    return f"{THUMBS_DIR}/{name}.jpg"


def original_thumb(uri: str) -> str:
    """Where the thumbnail of an input (a photo or a painting) lives, relative to the output root."""
    return f"{ORIGINALS_DIR}/{hashlib.sha256(uri.encode()).hexdigest()[:20]}.jpg"


@dataclass
class Cell:
    name: str
    content: str
    style: str  # the column's label: a style's name, or a blend with its weights
    status: str  # produced | skipped | failed
    reason: str = ""
    output: str = ""  # relative to the root
    sidecar: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)  # a sweep point's values; empty: not swept
    sweep_of: str = ""  # the swept pair's name without the values


@dataclass
class Page:
    contents: list[str] = field(default_factory=list)  # content URIs, in order
    styles: dict[str, list[str]] = field(default_factory=dict)  # column label -> style URIs
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # the grid: a swept pair's first point
    sweeps: dict[tuple[str, str], list[Cell]] = field(default_factory=dict)  # (content, style) -> its points, in order

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


def style_label(names: list[str], blend: list[float] | None = None) -> str:
    """``starry``, or ``starry 0.7 + scream 0.3`` for a blend."""
    if len(names) == 1:
        return names[0]
    weights = blend or [1 / len(names)] * len(names)
    return " + ".join(f"{n} {w:.2g}" for n, w in zip(names, weights, strict=False))


def _relative(root: str, uri: str) -> str:
    prefix = root.rstrip("/") + "/"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


def _read_json(storage: Any, uri: str) -> dict[str, Any] | None:
    try:
        data = json.loads(storage.read_bytes(uri))
    except (ValueError, FileNotFoundError, StorageError):
        return None
    return data if isinstance(data, dict) else None


def _cell_from_sidecar(root: str, rel: str, meta: dict[str, Any]) -> tuple[Cell, list[str]] | None:
    try:
        names = [s["name"] for s in meta["styles"]]
        uris = [s["uri"] for s in meta["styles"]]
        blend = meta.get("parameters", {}).get("style_blend") or None
        total = sum(blend) if blend else 0
        weights = [w / total for w in blend] if blend and total else None
        cell = Cell(meta["name"], meta["content"]["uri"], style_label(names, weights), "produced",
                    output=_relative(root, meta["output"]), sidecar=rel, meta=meta, sweep=dict(meta.get("sweep") or {}),
                    sweep_of=str(meta.get("sweep_of", "")))
    except (KeyError, TypeError):
        return None  # not one of our sidecars
    return cell, uris


def collect(root: str) -> tuple[Page, set[str]]:
    """The page's cells from the last summary (in plan order, failures included) and every sidecar
    directly under ``root``; also every file under ``root``, relative, to link only what exists."""
    storage = storage_for(root)
    files = {_relative(root, uri) for uri in storage.list(root)}
    sidecars = {}
    for rel in sorted(files):
        if "/" not in rel and rel.endswith(".json") and rel != SUMMARY_NAME:
            meta = _read_json(storage, join(root, rel))
            found = _cell_from_sidecar(root, rel, meta) if meta else None
            if found:
                sidecars[found[0].name] = found
    if not sidecars and SUMMARY_NAME not in files:
        where = "no such folder" if not is_s3(root) and not files else "no stylized outputs here (no sidecars, no summary.json)"
        raise InputError(f"{root}: {where}; run nst run with this output first")
    page = Page()
    summary = _read_json(storage, join(root, SUMMARY_NAME)) if SUMMARY_NAME in files else None
    for row in (summary or {}).get("pairs", []):
        _add_row(page, row, sidecars)
    for cell, uris in sidecars.values():  # outputs of earlier runs, not in the last summary
        if (cell.content, cell.style) not in page.cells or (cell.sweep and (cell.content, cell.style) in page.sweeps):
            page.add(cell, uris)
    return page, files


def _add_row(page: Page, row: dict[str, Any], sidecars: dict[str, tuple[Cell, list[str]]]) -> None:
    found = sidecars.pop(row.get("name", ""), None)
    if found is not None and row.get("status") != "failed":
        cell, uris = found
        cell.status = row.get("status", cell.status)
        page.add(cell, uris)
        return
    names = row.get("style_names") or [u.rsplit("/", 1)[-1] for u in row.get("styles", [])]
    label = style_label(names, row.get("blend"))
    page.add(Cell(row.get("name", "?"), row.get("content", "?"), label, row.get("status", "failed"),
                  reason=row.get("reason", ""), sweep=dict(row.get("sweep") or {}), sweep_of=str(row.get("sweep_of", ""))),
             row.get("styles", []))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def headline(page: Page) -> str:
    shown = page.all_cells()
    count = {status: sum(c.status == status for c in shown) for status in ("failed", "running", "pending")}
    text = _plural(len(shown) - sum(count.values()), "image")
    for status, n in count.items():
        text += f" and {n} {status}" if n else ""
    return f"{text}: {_plural(len(page.contents), 'photo')} × {_plural(len(page.styles), 'style')}"


def _short(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


_SHOWN_PARAMETERS = ("size", "iterations", "content_weight", "style_weight", "tv_weight", "style_scale",
                     "pooling", "init", "preserve_color", "precision", "seed")


def _details(cell: Cell) -> tuple[str, str]:
    """(the <details> list, the hover text) of a cell."""
    meta = cell.meta
    facts: list[tuple[str, str]] = []
    if meta.get("output_size"):
        facts.append(("output", "x".join(map(str, meta["output_size"])) + " px"))
    if meta.get("wall_time_s") is not None:
        facts.append(("time", f"{meta['wall_time_s']:.1f} s, {meta.get('iterations', '?')} iterations"))
    if meta.get("scales"):
        facts.append(("scales", _scales(meta["scales"])))
    for key, value in (meta.get("final_losses") or {}).items():
        facts.append((f"loss {key}", _fmt(value)))
    parameters = meta.get("parameters") or {}
    facts += [(k, _fmt(parameters[k])) for k in _SHOWN_PARAMETERS if k in parameters]
    if meta.get("device"):
        facts.append(("device", str(meta["device"].get("name") or meta["device"].get("type"))))
    e = html.escape
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    return f"<dl>{items}</dl>", "; ".join(f"{k} {v}" for k, v in facts[:6])


def _scales(reports: list[dict[str, Any]]) -> str:
    """What each scale ran: ``256 px 240 its (plateau), 512 px 150 its``."""
    return ", ".join(f"{max(r.get('height', 0), r.get('width', 0))} px {r.get('iterations', '?')} its"
                     + (" (plateau)" if r.get("stopped_early") else "") for r in reports)


def _cell_html(cell: Cell | None, files: set[str], points: list[Cell] | None = None, *, attrs: str = "", extra: str = "") -> str:
    """A grid cell (``points``: a swept pair's, then it links to the comparison), or a sweep point
    with its ``attrs`` and ``extra`` (its values) added."""
    e = html.escape
    if cell is None:
        return '<td class="empty">not planned</td>'
    if cell.status in ("pending", "running"):
        return _live_cell_html(cell, files, attrs, extra)
    if points:
        return _cell_html(cell, files, attrs=attrs, extra=f'<a class="compare" href="#{e(_sweep_id(cell))}">{len(points)} settings: compare ↓</a>')
    if cell.status == "failed":
        return (f'<td class="failed" data-pair="{e(cell.name)}"{attrs}><div class="reason"><strong>failed</strong>: '
                f'{e(cell.reason or "no reason given")}</div>{extra}</td>')
    thumb = pair_thumb(cell.name)
    image = f'<img src="{e(thumb)}" alt="{e(cell.name)}" loading="lazy">' if thumb in files else f"<span>{e(cell.name)}</span>"
    dl, hover = _details(cell)
    return (f'<td class="{e(cell.status)}" data-pair="{e(cell.name)}"{attrs}><a href="{e(cell.output)}" title="{e(hover)}">{image}</a>'
            f'<details><summary>{e(cell.status)} · details</summary>{dl}<a href="{e(cell.sidecar)}">metadata (JSON)</a></details>{extra}</td>')


def _live_cell_html(cell: Cell, files: set[str], attrs: str, extra: str) -> str:
    """A pair of a run in progress: waiting, or running with its latest image and progress."""
    e = html.escape
    if cell.status == "pending":
        return f'<td class="pending" data-pair="{e(cell.name)}"{attrs}><div class="state">pending</div>{extra}</td>'
    from tasks.live import live_image

    state = cell.meta
    image = live_image(cell.name)
    shown = f'<img src="{e(image)}?v={state.get("updated", 0):.0f}" alt="{e(cell.name)} (running)">' if image in files else ""
    where = f"scale {state.get('scale', '?')}/{state.get('scales', '?')}, iteration {state.get('iteration', '?')}"
    return (f'<td class="running" data-pair="{e(cell.name)}" data-progress="{state.get("progress", 0)}"{attrs}>{shown}'
            f'<div class="state">running · {100 * float(state.get("progress", 0)):.0f} % · {e(where)}</div>{extra}</td>')


def _sweep_id(cell: Cell) -> str:
    return "sweep-" + hashlib.sha256(f"{cell.content}\n{cell.style}\n{cell.sweep_of}".encode()).hexdigest()[:12]


def _value(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "auto"  # scales: [] is the automatic schedule
    return _fmt(value)


def _point_html(cell: Cell, files: set[str]) -> str:
    """One sweep point: the output, labelled with its values (the swept parameters highlighted)."""
    e = html.escape
    label = "".join(f'<mark class="swept-value" data-key="{e(k)}">{e(k)} {e(_value(v))}</mark>' for k, v in cell.sweep.items())
    return _cell_html(cell, files, attrs=f' data-values="{e(json.dumps(cell.sweep))}"', extra=f'<div class="values">{label}</div>')


def _sweep_html(points: list[Cell], style_uris: list[str], files: set[str]) -> str:
    """A swept pair's points side by side in the sweep's order, after its photo and painting."""
    e = html.escape
    first = points[0]
    varies = ", ".join(dict.fromkeys(k for p in points for k in p.sweep))
    style = _original_html(style_uris[0], first.style, files, "style") if len(style_uris) == 1 else f"<th>{e(first.style)}</th>"
    cells = "".join(_point_html(p, files) for p in points)
    return (f'<section class="sweep" id="{e(_sweep_id(first))}" data-sweep="{e(first.sweep_of)}">'
            f'<h2>{e(first.sweep_of)}: <mark class="varies">{e(varies)}</mark> varies, {len(points)} settings</h2>'
            f'<table><tr>{_original_html(first.content, _short(first.content), files, "content")}{style}{cells}</tr></table></section>')


def _original_html(uri: str, label: str, files: set[str], css: str) -> str:
    e = html.escape
    thumb = original_thumb(uri)
    image = f'<img class="original" src="{e(thumb)}" alt="{e(label)}">' if thumb in files else ""
    return f'<th class="{css}" title="{e(uri)}">{image}<div>{e(label)}</div></th>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
table { border-collapse: collapse; }
th, td { padding: .4rem; text-align: center; vertical-align: top; }
th div { font-size: .85rem; max-width: 14rem; overflow-wrap: anywhere; }
img { max-width: 256px; max-height: 256px; box-shadow: 0 1px 3px #0003; }
img.original { max-width: 160px; max-height: 160px; }
td { min-width: 140px; max-width: 260px; }
td.failed { background: #fdecea; color: #8a1c12; font-size: .85rem; overflow-wrap: anywhere; text-align: left; }
td.empty { color: #bbb; }
td.pending { color: #999; background: #f0f0f0; }
td.running { background: #eef6ff; }
div.state { font-size: .8rem; margin-top: .2rem; }
a.compare { display: block; font-size: .8rem; margin-top: .2rem; }
section.sweep { margin-top: 2rem; }
section.sweep h2 { font-size: 1.05rem; font-weight: 600; }
mark { background: #fff2a8; border-radius: 3px; padding: 0 .25rem; }
div.values { font-size: .8rem; margin-top: .25rem; display: flex; flex-wrap: wrap; gap: .25rem; justify-content: center; }
details { font-size: .75rem; color: #555; text-align: left; max-width: 256px; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 .6rem; margin: .3rem 0; }
dt { color: #888; } dd { margin: 0; overflow-wrap: anywhere; }
"""


def render(page: Page, files: set[str], title: str, reload_s: int | None = None) -> str:
    """The page; ``reload_s``: a run is in progress, and the page reloads itself this often."""
    e = html.escape
    live = ""
    if reload_s:
        live = f'<meta http-equiv="refresh" content="{reload_s}">'
    note = (f'<p class="live">This run is in progress: the page reloads every {reload_s} s; running pairs show their latest image.</p>'
            if reload_s else "")
    head = "".join(_original_html(uris[0] if len(uris) == 1 else "", label, files if len(uris) == 1 else set(), "style")
                   for label, uris in page.styles.items())
    rows = []
    for content in page.contents:
        cells = "".join(_cell_html(page.cells.get((content, label)), files, page.sweeps.get((content, label))) for label in page.styles)
        rows.append(f"<tr>{_original_html(content, _short(content), files, 'content')}{cells}</tr>")
    sweeps = "\n".join(_sweep_html(points, page.styles[style], files) for (_, style), points in page.sweeps.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{_STYLE}</style>{live}</head>
<body><h1>{e(title)}</h1>{note}
<p class="counts">{e(headline(page))}. Rows are photos, columns are styles; click an image for full size, open "details" for its parameters and losses.</p>
<table><tr><th></th>{head}</tr>
{chr(10).join(rows)}
</table>
{sweeps}</body></html>
"""


def build_live_gallery(plan: Any, finished: dict[str, dict[str, Any]], reload_s: int, title: str = "Stylized gallery",
                       sidecars: dict[str, Any] | None = None) -> str:
    """``index.html`` of a run in progress: every planned pair, finished (as in the final page),
    running (from its live files) or pending, in plan order; the page reloads every ``reload_s``.
    ``sidecars`` keeps the finished pairs' cells between calls, so each sidecar is read once."""
    sidecars = {} if sidecars is None else sidecars
    from tasks.live import live_state

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
            _add_row(page, row, {row["name"]: found} if found else {})
            continue
        state = _read_json(storage, join(root, live_state(pair.name))) if live_state(pair.name) in files else None
        running = state is not None
        row = pair.row(plan.settings)
        label = style_label(row["style_names"], row["blend"])
        page.add(Cell(pair.name, pair.content_uri, label, "running" if running else "pending", meta=state or {}, sweep=dict(pair.sweep),
                      sweep_of=pair.sweep_of), row["styles"])
    uri = join(root, GALLERY_NAME)
    storage.write_bytes(uri, render(page, files, title, reload_s).encode(), "text/html; charset=utf-8")
    return uri


def _sidecar_cell(root: str, storage: Any, row: dict[str, Any], files: set[str]) -> tuple[Cell, list[str]] | None:
    rel = _relative(root, row.get("sidecar", ""))
    meta = _read_json(storage, row["sidecar"]) if rel in files and row.get("status") != "failed" else None
    return _cell_from_sidecar(root, rel, meta) if meta else None


def build_gallery(root: str, title: str = "Stylized gallery") -> str:
    """Write ``index.html`` at ``root`` and return its URI. An output root with nothing to show is
    an :class:`InputError`."""
    page, files = collect(root)
    uri = join(root, GALLERY_NAME)
    storage_for(uri).write_bytes(uri, render(page, files, title).encode(), "text/html; charset=utf-8")
    return uri
