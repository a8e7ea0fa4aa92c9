"""``index.html`` at an output root: rows of contents, columns of styles, built from the sidecars."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from tasks.plan import SUMMARY_NAME
from tasks.storage import join, storage_for

GALLERY_NAME = "index.html"


@dataclass(frozen=True)
class Cell:
    name: str
    output: str  # relative to the root
    sidecar: str
    thumb: str
    losses: dict[str, float]


def _relative(root: str, uri: str) -> str | None:
    prefix = root.rstrip("/") + "/"
    return uri[len(prefix):] if uri.startswith(prefix) else None


def collect(root: str) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(contents, styles, cells) from every sidecar directly under ``root``."""
    storage = storage_for(root)
    cells: dict[tuple[str, str], Cell] = {}
    for uri in storage.list(root):
        rel = _relative(root, uri)
        if rel is None or "/" in rel or not rel.endswith(".json") or rel == SUMMARY_NAME:
            continue
        try:
            meta = json.loads(storage.read_bytes(uri))
            content = meta["content"]["uri"]
            style = "+".join(s["name"] for s in meta["styles"])
            output = _relative(root, meta["output"]) or meta["output"]
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            continue  # not one of our sidecars
        cells[(content, style)] = Cell(meta["name"], output, rel, f"thumbs/{meta['name']}.jpg", meta.get("final_losses", {}))
    contents = sorted({c for c, _ in cells})
    styles = sorted({s for _, s in cells})
    return contents, styles, cells


def render(contents: list[str], styles: list[str], cells: dict[tuple[str, str], Cell], title: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(s)}</th>" for s in styles)
    rows = []
    for content in contents:
        tds = []
        for style in styles:
            cell = cells.get((content, style))
            if cell is None:
                tds.append("<td class=empty>—</td>")
                continue
            tds.append(
                f'<td><a href="{e(cell.output)}"><img src="{e(cell.thumb)}" alt="{e(cell.name)}" loading="lazy"></a>'
                f'<br><a class=meta href="{e(cell.sidecar)}">metadata</a></td>'
            )
        label = content.rsplit("/", 1)[-1]
        rows.append(f'<tr><th class=row title="{e(content)}">{e(label)}</th>{"".join(tds)}</tr>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .4rem; text-align: center; vertical-align: top; }}
th.row {{ text-align: right; max-width: 12rem; overflow-wrap: anywhere; }}
img {{ max-width: 256px; max-height: 256px; box-shadow: 0 1px 3px #0003; }}
a.meta {{ font-size: .75rem; color: #666; }}
td.empty {{ color: #bbb; }}
</style></head>
<body><h1>{e(title)}</h1>
<p>{len(cells)} images: {len(contents)} contents × {len(styles)} styles. Click an image for full size.</p>
<table><tr><th></th>{head}</tr>
{chr(10).join(rows)}
</table></body></html>
"""


def build_gallery(root: str, title: str = "Stylized gallery") -> str:
    """Write ``index.html`` at ``root`` and return its URI."""
    contents, styles, cells = collect(root)
    uri = join(root, GALLERY_NAME)
    storage_for(uri).write_bytes(uri, render(contents, styles, cells, title).encode(), "text/html; charset=utf-8")
    return uri

