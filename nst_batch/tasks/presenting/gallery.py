"""``index.html`` at an output root, written: read (``gallery_page``), rendered (``gallery_html``), stored.

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

from nst_batch.tasks.output.layout import GALLERY_NAME
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.pair.records import PairRow
from nst_batch.tasks.planning.jobs import Plan
from nst_batch.tasks.presenting.gallery_html import render
from nst_batch.tasks.presenting.gallery_page import SidecarCell, collect, live_page
from nst_batch.tasks.presenting.run_marker import clear_live


def build_live_gallery(
    plan: Plan,
    finished: dict[str, PairRow],
    reload_s: int,
    title: str = "Stylized gallery",
    sidecars: dict[str, SidecarCell | None] | None = None,
) -> str:
    """``index.html`` of a run in progress (:func:`live_page`); the page reloads every
    ``reload_s``. ``sidecars`` keeps the finished pairs' cells between calls, so each sidecar is
    read once."""
    root = plan.settings.output_root
    page, files = live_page(plan, finished, {} if sidecars is None else sidecars)
    return _write(root, render(page, files, title, reload_s))


def build_gallery(root: str, title: str = "Stylized gallery") -> str:
    """Write ``index.html`` at ``root`` and return its URI. An output root with nothing to show is
    an :class:`InputError`. A run that was interrupted is said so on the page, and its live files
    are removed."""
    page, files = collect(root)
    uri = _write(root, render(page, files, title))
    if page.interrupted is not None:
        clear_live(root)
    return uri


def _write(root: str, text: str) -> str:
    uri = join(root, GALLERY_NAME)
    # backslashreplace: a name with lone surrogates (bytes that are not UTF-8) cannot fail the page
    storage_for(uri).write_bytes(uri, text.encode("utf-8", "backslashreplace"), "text/html; charset=utf-8")
    return uri
