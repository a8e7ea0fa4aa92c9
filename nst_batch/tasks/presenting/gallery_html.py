"""The gallery's HTML: a :class:`~nst_batch.tasks.presenting.gallery_page.Page` rendered as a page a
person browses, with no JavaScript.

A cell is the stylized thumbnail, linking to the full image, with its parameters, losses and
timing in a ``<details>`` below it (and on hover); a failed pair's cell says why. A swept pair (a
manifest ``sweep:``) shows its first point in the grid and all of its points side by side below it,
in the sweep's order, labelled with their values, beside the photo and the painting. Every link is
relative and goes through :func:`safe_link`, so the page works from a local folder and from S3
alike, and a sidecar's text cannot make it link elsewhere.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from typing import Any
from urllib.parse import quote

from nst_batch.tasks.output.layout import GALLERY_MARK, live_image, original_thumb, pair_thumb
from nst_batch.tasks.pair.records import PairRecord, RunSummary, json_number, shown_quality
from nst_batch.tasks.presenting.gallery_page import UNREADABLE, Cell, Page

THUMB_PX = 256  # the pair thumbnails' longer side (nst_batch.tasks.pair.image_files.thumbnail)
_CELL_VW = "(max-width: 900px) 45vw, 30vw"  # how wide a grid cell is drawn, for srcset


# What the page may link to: a relative path of a file the run wrote, with no scheme, no "..", no
# absolute path, no backslash or control character (a sidecar on a shared prefix is anyone's text).
# Letters of any script are fine (café, 東京): the link is percent-encoded (safe_link).
_SAFE_LINK = re.compile(r"^(?!.*(?:^|/)\.\.(?:/|$))[^\x00-\x20\x7f/\\:][^\x00-\x1f\x7f\\:]*$")
CSP = "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def safe_link(rel: str, files: set[str]) -> str | None:
    """``rel`` percent-encoded (UTF-8) if the page may link to it: a file under the output root
    that exists, relative, with no scheme and no ``..``; else None. Every href and src goes
    through here. Encoded, a name in any script works from disk and from S3's web endpoint
    alike (``café__x.png`` -> ``caf%C3%A9__x.png``), and a comma cannot split a srcset."""
    if not isinstance(rel, str) or rel not in files or ":" in rel or not _SAFE_LINK.match(rel) or not rel.isprintable():
        return None
    try:
        return quote(rel, safe="/~@+=-._", encoding="utf-8", errors="strict")
    except UnicodeEncodeError:  # a name that is not UTF-8 (lone surrogates): not linked
        return None


def _short(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


_SHOWN_PARAMETERS = (
    "size",
    "iterations",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_scale",
    "pooling",
    "init",
    "preserve_color",
    "precision",
    "seed",
)


def _details(cell: Cell) -> tuple[str, str]:
    """(the <details> list, the hover text) of a cell; values of the wrong type are left out."""
    record = cell.record
    facts: list[tuple[str, str]] = []
    if record is None:
        return "<dl></dl>", ""
    size = record.output_size
    if size and all(json_number(v) is not None for v in size):
        facts.append(("output", "x".join(f"{v:g}" for v in size) + " px"))
    if json_number(record.wall_time_s) is not None:
        iterations = record.iterations if json_number(record.iterations) is not None else "?"
        facts.append(("time", f"{record.wall_time_s:.1f} s, {iterations} iterations"))
    if all(isinstance(r, dict) for r in record.scales) and record.scales:
        facts.append(("scales", _scales(record.scales)))
    for key, value in record.final_losses.items():
        facts.append((f"loss {key}", _fmt(value)))
    facts += [(k, _fmt(record.parameters[k])) for k in _SHOWN_PARAMETERS if k in record.parameters]
    if record.device:
        facts.append(("device", str(record.device.get("name") or record.device.get("type"))))
    e = html.escape
    items = "".join(f"<dt>{e(str(k))}</dt><dd>{e(v)}</dd>" for k, v in facts)
    return f"<dl>{items}</dl>", "; ".join(f"{k} {v}" for k, v in facts[:6])


def _scales(reports: list[dict[str, Any]]) -> str:
    """What each scale ran: ``256 px 240 its (plateau), 512 px 150 its``."""
    return ", ".join(
        f"{max(r.get('height', 0), r.get('width', 0))} px {r.get('iterations', '?')} its"
        + (" (plateau)" if r.get("stopped_early") else "")
        for r in reports
    )


def _cell_html(
    cell: Cell | None, files: set[str], points: list[Cell] | None = None, *, attrs: str = "", extra: str = ""
) -> str:
    """A grid cell (``points``: a swept pair's, then it links to the comparison), or a sweep point
    with its ``attrs`` and ``extra`` (its values) added. A cell whose sidecar cannot be shown says
    so instead of breaking the page."""
    try:
        return _cell_html_of(cell, files, points, attrs=attrs, extra=extra)
    except (KeyError, TypeError, ValueError, AttributeError):
        name = html.escape(cell.name if cell is not None else "?")
        return (
            f'<td class="unreadable" data-pair="{name}"><div class="reason"><strong>{UNREADABLE}</strong>: '
            f"{name}</div></td>"
        )


def _cell_html_of(
    cell: Cell | None, files: set[str], points: list[Cell] | None = None, *, attrs: str = "", extra: str = ""
) -> str:
    e = html.escape
    if cell is None:
        return '<td class="empty">not planned</td>'
    if cell.status in ("pending", "running"):
        return _live_cell_html(cell, files, attrs, extra)
    if points:
        return _cell_html(
            cell,
            files,
            attrs=attrs,
            extra=f'<a class="compare" href="#{e(_sweep_id(cell))}">{len(points)} settings: compare ↓</a>',
        )
    if cell.status in ("failed", "unreadable", "interrupted"):
        word = {"failed": "failed", "unreadable": UNREADABLE, "interrupted": "interrupted"}[cell.status]
        reason = cell.reason.split(": ", 1)[-1] if cell.status in ("unreadable", "interrupted") else cell.reason
        return (
            f'<td class="{cell.status}" data-pair="{e(cell.name)}"{attrs}><div class="reason"><strong>{word}</strong>: '
            f"{e(reason or 'no reason given')}</div>{extra}</td>"
        )
    thumb = safe_link(pair_thumb(cell.name), files)
    output, sidecar = safe_link(cell.output, files), safe_link(cell.sidecar, files)
    size = cell.record.output_size if cell.record is not None else []
    image = (
        f'<img src="{e(thumb)}"{_srcset(thumb, output, size)} alt="{e(cell.name)}" '
        f'loading="lazy"{_natural_width(size, output)}>'
        if thumb
        else f"<span>{e(cell.name)}</span>"
    )
    dl, hover = _details(cell)
    missing = f'<div title="{e(hover)}">{image}</div><div class="note">no output file</div>'
    shown = f'<a href="{e(output)}" title="{e(hover)}">{image}</a>' if output else missing
    metadata = f'<a href="{e(sidecar)}">metadata (JSON)</a>' if sidecar else ""
    measured, quality_attrs = _quality(cell.record)
    return (
        f'<td class="{e(cell.status)}" data-pair="{e(cell.name)}"{quality_attrs}{attrs}>{shown}{measured}'
        f"<details><summary>{e(_status_words(cell))} · details</summary>{dl}{metadata}</details>{extra}</td>"
    )


def _quality(record: PairRecord | None) -> tuple[str, str]:
    """The output's measured quality at gallery scale (nst_batch.core.quality): a line under the
    image, and ``data-content`` / ``data-style-gain`` attributes that a sweep's row sorts by."""
    shown = shown_quality(record.quality) if record is not None else None
    if shown is None:
        return "", ""
    side, content, gain = shown
    title = (
        f"at {side} px: content distance {content:.3f} (0 = the photo's features), style gain {gain:.3f} "
        "(the painting's Gram distance over the photo's own: 1 = none of the style, lower = more)"
    )
    line = f'<div class="quality" title="{html.escape(title)}">content {content:.2f} · style {gain:.2f}</div>'
    return line, f' data-content="{content:.4f}" data-style-gain="{gain:.4f}"'


def _status_words(cell: Cell) -> str:
    """``produced``, or for a pair an earlier run made (skipped by this one): ``made earlier, 2026-12-03 04:12 UTC``."""
    if cell.status != "skipped":
        return cell.status
    when = cell.record.finished_at if cell.record is not None else ""
    return f"made earlier, {when[:16].replace('T', ' ')} UTC" if len(when) >= 16 else "made earlier"


def _srcset(thumb: str, output: str | None, size: list[int]) -> str:
    """The thumbnail, and the full output for cells wider than it (wide windows): the browser picks."""
    if not output or not (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return ""
    if size[0] <= THUMB_PX:
        return ""
    e = html.escape
    return f' srcset="{e(thumb)} {THUMB_PX}w, {e(output)} {size[0]}w" sizes="{_CELL_VW}"'


def _natural_width(size: list[int], output: str | None) -> str:
    """A ``max-width`` of the most pixels the cell's sources have (the full output when srcset offers
    it, else the thumbnail's), so a small output is never drawn larger than it is."""
    if not (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return ""
    width, height = size
    thumb_width = round(width * min(1.0, THUMB_PX / max(width, height)))
    most = width if output and width > THUMB_PX else thumb_width
    return f' style="max-width: min(100%, {most}px)"'


def _live_cell_html(cell: Cell, files: set[str], attrs: str, extra: str) -> str:
    """A pair of a run in progress: waiting, or running with its latest image and progress."""
    e = html.escape
    if cell.status == "pending":
        return f'<td class="pending" data-pair="{e(cell.name)}"{attrs}><div class="state">pending</div>{extra}</td>'

    state = cell.live
    image = safe_link(live_image(cell.name), files)
    updated, progress = (
        json_number(state.get("updated")) or 0.0,
        min(max(json_number(state.get("progress")) or 0.0, 0.0), 1.0),
    )
    shown = f'<img src="{e(image)}?v={updated:.0f}" alt="{e(cell.name)} (running)">' if image else ""
    where = f"scale {state.get('scale', '?')}/{state.get('scales', '?')}, iteration {state.get('iteration', '?')}"
    return (
        f'<td class="running" data-pair="{e(cell.name)}" data-progress="{progress}"{attrs}>{shown}'
        f'<div class="state">running · {100 * progress:.0f} % · {e(where)}</div>{extra}</td>'
    )


def _sweep_id(cell: Cell) -> str:
    return (
        "sweep-"
        + hashlib.sha256(f"{cell.content}\n{cell.style}\n{cell.sweep_of}".encode("utf-8", "surrogatepass")).hexdigest()[
            :12
        ]
    )


def _value(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "auto"  # scales: [] is the automatic schedule
    return _fmt(value)


def _point_html(cell: Cell, files: set[str]) -> str:
    """One sweep point: the output, labelled with its values (the swept parameters highlighted)."""
    e = html.escape
    label = "".join(
        f'<mark class="swept-value" data-key="{e(k)}">{e(k)} {e(_value(v))}</mark>' for k, v in cell.sweep.items()
    )
    return _cell_html(
        cell, files, attrs=f' data-values="{e(json.dumps(cell.sweep))}"', extra=f'<div class="values">{label}</div>'
    )


def _sweep_html(points: list[Cell], style_uris: list[str], files: set[str]) -> str:
    """A swept pair's points side by side in the sweep's order, after its photo and painting."""
    e = html.escape
    first = points[0]
    varies = ", ".join(dict.fromkeys(k for p in points for k in p.sweep))
    style = (
        _original_html(style_uris[0], first.style, files, "style")
        if len(style_uris) == 1
        else f"<th>{e(first.style)}</th>"
    )
    cells = "".join(_point_html(p, files) for p in points)
    return (
        f'<section class="sweep" id="{e(_sweep_id(first))}" data-sweep="{e(first.sweep_of)}">'
        f'<h2>{e(first.sweep_of)}: <mark class="varies">{e(varies)}</mark> varies, {len(points)} settings</h2>'
        f"<table><tr>{_original_html(first.content, _short(first.content), files, 'content')}"
        f"{style}{cells}</tr></table>"
        f"{_ranking(points)}</section>"
    )


def _ranking(points: list[Cell]) -> str:
    """The sweep's settings sorted by their measured style gain (most style first) and by content
    distance (closest to the photo first): the page has no script, so it says the two orders."""
    measured = [
        (cell, shown[2], shown[1])
        for cell in points
        if cell.record is not None and (shown := shown_quality(cell.record.quality)) is not None
    ]
    if len(measured) < 2:
        return ""
    e = html.escape

    def said(cell: Cell, value: float) -> str:
        values = ", ".join(f"{k} {_value(v)}" for k, v in cell.sweep.items())
        return f'<li data-values="{e(json.dumps(cell.sweep))}">{e(values)}: {value:.2f}</li>'

    by_style = "".join(said(c, g) for c, g, _ in sorted(measured, key=lambda m: m[1]))
    by_content = "".join(said(c, d) for c, _, d in sorted(measured, key=lambda m: m[2]))
    return (
        f'<div class="ranking"><div><strong>most style first</strong> (style gain)<ol '
        f'class="by-style">{by_style}</ol></div>'
        f"<div><strong>closest to the photo first</strong> (content distance)<ol "
        f'class="by-content">{by_content}</ol></div></div>'
    )


def _original_html(uri: str, label: str, files: set[str], css: str) -> str:
    e = html.escape
    thumb = safe_link(original_thumb(uri), files)
    image = f'<img class="original" src="{e(thumb)}" alt="{e(label)}">' if thumb else ""
    return f'<th class="{css}" title="{e(uri)}">{image}<div>{e(label)}</div></th>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
table { border-collapse: collapse; }
th, td { padding: .4rem; text-align: center; vertical-align: top; }
th div { font-size: .85rem; max-width: 14rem; margin: 0 auto; overflow-wrap: anywhere; }
img { box-shadow: 0 1px 3px #0003; }
div.grid { overflow-x: auto; }
table.grid { width: 100%; table-layout: fixed; }
table.grid col.content { width: 12rem; }
/* As wide as the cell but never past the image's own pixels (an inline max-width), and never
   taller than 45 % of the window: a portrait row leaves room for the next ones. */
table.grid td img { width: 100%; height: auto; max-height: 45vh; object-fit: contain; }
section.sweep td img { max-height: 45vh; }
div.run { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .6rem .9rem; margin-bottom: 1rem; }
div.run p { margin: .2rem 0; }
div.run ul.failures { margin: .3rem 0 0; padding-left: 1.2rem; color: #8a1c12; font-size: .9rem; }
img.original { max-width: 160px; max-height: 160px; }
td { min-width: 140px; }
p.interrupted { background: #fff4e5; padding: .5rem; }
td.failed, td.unreadable, td.interrupted {
  background: #fdecea; color: #8a1c12; font-size: .85rem; overflow-wrap: anywhere; text-align: left;
}
td.empty { color: #bbb; }
td.pending { color: #999; background: #f0f0f0; }
td.running { background: #eef6ff; }
div.state { font-size: .8rem; margin-top: .2rem; }
a.compare { display: block; font-size: .8rem; margin-top: .2rem; }
section.sweep { margin-top: 2rem; }
section.sweep h2 { font-size: 1.05rem; font-weight: 600; }
mark { background: #fff2a8; border-radius: 3px; padding: 0 .25rem; }
div.values {
  font-size: .8rem; margin-top: .25rem; display: flex; flex-wrap: wrap; gap: .25rem; justify-content: center;
}
details { font-size: .75rem; color: #555; text-align: left; }
div.quality { font-size: .75rem; color: #555; margin-top: .2rem; }
div.ranking { display: flex; gap: 2rem; font-size: .8rem; color: #444; margin: .4rem 0 0 .4rem; }
div.ranking ol { margin: .2rem 0; padding-left: 1.4rem; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 .6rem; margin: .3rem 0; }
dt { color: #888; } dd { margin: 0; overflow-wrap: anywhere; }
"""


def render(page: Page, files: set[str], title: str, reload_s: int | None = None) -> str:
    """The page; ``reload_s``: a run is in progress, and the page reloads itself this often."""
    e = html.escape
    live = ""
    if reload_s:
        live = f'<meta http-equiv="refresh" content="{reload_s}">'
    note = (
        f'<p class="live">This run is in progress: the page reloads every {reload_s} s; running pairs show their '
        f"latest image.</p>"
        if reload_s
        else ""
    )
    if page.interrupted and not reload_s:
        run = page.interrupted
        far = f" after {run.finished} of {run.planned} pairs" if run.finished is not None and run.planned else ""
        note = (
            f'<p class="interrupted"><strong>This run was interrupted</strong> ({e(run.when)}){e(far)}: it ended '
            f"without its "
            f"summary. Re-run it to finish; finished pairs are skipped.</p>"
        )
    head = "".join(
        _original_html(uris[0] if len(uris) == 1 else "", label, files if len(uris) == 1 else set(), "style")
        for label, uris in page.styles.items()
    )
    rows = []
    for content in page.contents:
        cells = "".join(
            _cell_html(page.cells.get((content, label)), files, page.sweeps.get((content, label)))
            for label in page.styles
        )
        rows.append(f"<tr>{_original_html(content, _short(content), files, 'content')}{cells}</tr>")
    sweeps = "\n".join(_sweep_html(points, page.styles[style], files) for (_, style), points in page.sweeps.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">{GALLERY_MARK}<title>{e(title)}</title>
<style>{_STYLE}</style>{live}</head>
<body><h1>{e(title)}</h1>{note}{_run_header(page.run) if not reload_s else ""}
<p class="counts">{e(page.counts())}. Rows are photos, columns are styles; click an image for full size,
open "details" for its parameters and losses.</p>
<div class="grid"><table class="grid" style="min-width: {150 * len(page.styles) + 200}px">
<col class="content">{"<col>" * len(page.styles)}
<tr><th></th>{head}</tr>
{chr(10).join(rows)}
</table></div>
{sweeps}</body></html>
"""


def _run_header(run: RunSummary | None) -> str:
    """The last run, from its summary: when and for how long, which manifest, its counts, and its
    failed pairs first, each with its reason (at most 20 listed)."""
    if run is None:
        return ""
    e = html.escape
    started, took = run.started_at, run.wall_time_s if run.wall_time_s else None
    when = started.replace("T", " ").replace("+00:00", " UTC")[:23] if started else "at an unknown time"
    facts = ", ".join(
        f"{run.counts.get(k, 0):g} {word}"
        for k, word in (
            ("planned", "planned"),
            ("produced", "produced"),
            ("skipped", "done earlier"),
            ("failed", "failed"),
        )
    )
    failures = run.failures
    listed = "".join(
        f"<li><strong>{e(f.name or '?')}</strong>: {e(f.reason or 'no reason given')}</li>" for f in failures[:20]
    )
    more = f"<li>and {len(failures) - 20} more (summary.json lists them all)</li>" if len(failures) > 20 else ""
    failed = f'<ul class="failures">{listed}{more}</ul>' if failures else ""
    took_text = f", took {took:.0f} s" if took is not None else ""
    return (
        f'<div class="run"><p><strong>Last run</strong> {e(when)}{e(took_text)} of '
        f"<code>{e(run.manifest or '?')}</code>: "
        f"{e(facts)}.</p>{failed}</div>"
    )
