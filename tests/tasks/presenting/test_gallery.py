"""The gallery in its three parts: the page read from an output root (gallery_page), its HTML
(gallery_html) and the builders that write it (gallery), on a local folder, without a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.pair.records import Failure, InputRecord, PairRecord, PairRow, RunSummary, Status
from nst_batch.tasks.presenting.gallery import build_gallery
from nst_batch.tasks.presenting.gallery_html import render, safe_link
from nst_batch.tasks.presenting.gallery_page import UNREADABLE, collect, style_label


def _sidecar(root: Path, name: str, content: str, style: str, **extra: object) -> None:
    record = PairRecord(
        name=name,
        output=str(root / f"{name}.png"),
        output_bytes=4,
        output_sha256="ab" * 32,
        content=InputRecord(content, "cd" * 32, [8, 8]),
        styles=[InputRecord(f"styles/{style}.jpg", "ef" * 32, name=style)],
        format="png",
        output_size=[8, 8],
        finished_at="2026-12-06T10:00:00+00:00",
        **extra,
    )
    (root / f"{name}.json").write_text(json.dumps(record.to_json()))
    (root / f"{name}.png").write_bytes(b"\x89PNG")


def _row(root: Path, name: str, content: str, style: str, status: Status, reason: str = "") -> PairRow:
    return PairRow(
        name=name,
        content=content,
        styles=[f"styles/{style}.jpg"],
        style_names=[style],
        blend=[1.0],
        output=str(root / f"{name}.png"),
        sidecar=str(root / f"{name}.json"),
        status=status,
        reason=reason,
    )


def _summary(root: Path, rows: list[PairRow]) -> None:
    failed = [r for r in rows if r.status == Status.FAILED]
    summary = RunSummary(
        manifest="m.yaml",
        output=str(root),
        run_id="r",
        started_at="2026-12-06T09:59:00+00:00",
        finished_at="2026-12-06T10:01:00+00:00",
        counts={"planned": len(rows), "produced": len(rows) - len(failed), "skipped": 0, "failed": len(failed)},
        style_targets={"computed": 1, "from_cache": 0},
        failures=[Failure(r.name, r.content, r.styles, r.reason) for r in failed],
        pairs=rows,
        wall_time_s=60.0,
    )
    (root / "summary.json").write_text(json.dumps(summary.to_json()))


def test_the_page_follows_the_summary_then_shows_earlier_outputs_and_says_what_it_cannot_read(tmp_path):
    _sidecar(tmp_path, "b__waves", "photos/b.jpg", "waves")
    _sidecar(tmp_path, "a__waves", "photos/a.jpg", "waves")
    _sidecar(tmp_path, "old__waves", "photos/old.jpg", "waves")  # an earlier run's, not in the summary
    (tmp_path / "bent__waves.json").write_text(json.dumps({"name": "bent__waves", "styles": 3, "content": {}}))
    (tmp_path / "notes.json").write_text(json.dumps({"any": "json of someone else's"}))  # not a sidecar: not shown
    rows = [
        _row(tmp_path, "b__waves", "photos/b.jpg", "waves", Status.PRODUCED),
        _row(tmp_path, "a__waves", "photos/a.jpg", "waves", Status.PRODUCED),
        _row(tmp_path, "c__waves", "photos/c.jpg", "waves", Status.FAILED, "cannot decode photos/c.jpg"),
    ]
    _summary(tmp_path, rows)

    page, files = collect(str(tmp_path))
    assert page.contents[:3] == ["photos/b.jpg", "photos/a.jpg", "photos/c.jpg"]  # the plan's order
    assert "photos/old.jpg" in page.contents  # and after it, what earlier runs left
    cells = {c.name: c for c in page.all_cells()}
    assert cells["a__waves"].status == "produced" and cells["a__waves"].output == "a__waves.png"
    assert cells["c__waves"].status == "failed" and cells["c__waves"].reason == "cannot decode photos/c.jpg"
    assert cells["bent__waves"].status == "unreadable" and UNREADABLE in cells["bent__waves"].reason
    assert "notes" not in cells
    assert page.run is not None and page.run.counts["failed"] == 1
    assert page.counts() == "4 images and 1 failed: 5 photos × 2 styles"

    text = render(page, files, "Tonight")
    assert '<td class="failed" data-pair="c__waves"' in text and "cannot decode photos/c.jpg" in text
    assert 'href="a__waves.png"' in text and 'href="c__waves.png"' not in text  # only files that exist


def test_every_link_is_a_file_the_run_wrote_under_the_root_and_is_percent_encoded():
    files = {"a.png", "café__x.png", "sub/b.png", "../up.png", "http://evil/x.png", "a\\b.png", "tab\there.png"}
    assert safe_link("a.png", files) == "a.png"
    assert safe_link("café__x.png", files) == "caf%C3%A9__x.png"
    assert safe_link("sub/b.png", files) == "sub/b.png"
    for refused in ("../up.png", "http://evil/x.png", "a\\b.png", "tab\there.png", "missing.png", "/etc/passwd"):
        assert safe_link(refused, files) is None, refused


def test_a_sidecars_text_is_escaped_on_the_page(tmp_path):
    hostile = 'photos/<script>alert("x")</script>.jpg'
    _sidecar(tmp_path, "h__waves", hostile, "waves")
    page, files = collect(str(tmp_path))
    text = render(page, files, "<b>title</b>")
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;b&gt;title&lt;/b&gt;" in text


def test_build_gallery_writes_index_html_and_refuses_a_root_with_nothing_to_show(tmp_path):
    _sidecar(tmp_path, "a__waves", "photos/a.jpg", "waves")
    uri = build_gallery(str(tmp_path))
    assert uri == str(tmp_path / "index.html")
    assert 'data-pair="a__waves"' in (tmp_path / "index.html").read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no stylized outputs"):
        build_gallery(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="no such folder"):
        build_gallery(str(tmp_path / "absent"))


def test_a_blend_is_labelled_with_its_weights():
    assert style_label(["starry"]) == "starry"
    assert style_label(["starry", "scream"], [0.7, 0.3]) == "starry 0.7 + scream 0.3"
    assert style_label(["a", "b"]) == "a 0.5 + b 0.5"
    assert style_label([]) == "(no style)"
