"""An output root's run history (nst_batch.tasks.presenting.history): every run's summary read
back through RunSummary, oldest first; what is no summary is skipped, not fatal."""

import json

import pytest

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.output.layout import RUNS_DIR, SUMMARY_NAME
from nst_batch.tasks.presenting.history import list_runs, runs_table


def _summary(started: str, failed: int = 0) -> dict:
    failures = [
        {"name": f"p{i}", "content": "a.png", "styles": ["s.png"], "reason": "not an image file"} for i in range(failed)
    ]
    return {
        "manifest": "/m.yaml",
        "output": "out",
        "run_id": f"run-{started[11:13]}",
        "started_at": started,
        "finished_at": started,
        "counts": {"planned": 3, "produced": 3 - failed, "skipped": 0, "failed": failed},
        "style_targets": {"computed": 1, "from_cache": 0},
        "failures": failures,
        "pairs": [],
        "wall_time_s": 61.0,
    }


def test_the_runs_are_listed_oldest_first_and_a_stray_file_is_skipped(tmp_path):
    runs = tmp_path / RUNS_DIR
    runs.mkdir()
    (runs / "b.json").write_text(json.dumps(_summary("2026-12-06T11:00:00+00:00", failed=2)))
    (runs / "a.json").write_text(json.dumps(_summary("2026-12-06T09:00:00+00:00")))
    (runs / "c.json").write_text('{"half": ')  # a run being written
    (runs / "d.json").write_text(json.dumps({"not": "a summary"}))
    entries = list_runs(str(tmp_path))
    assert [e.summary.run_id for e in entries] == ["run-09", "run-11"]
    lines = runs_table(entries)
    assert len(lines) == 4 and "run-11" in lines[2] and "failed: p0: not an image file (and 1 more)" in lines[3]


def test_a_root_from_before_the_history_shows_its_summary_and_an_empty_one_says_so(tmp_path):
    (tmp_path / SUMMARY_NAME).write_text(json.dumps(_summary("")))
    assert [e.summary.counts["planned"] for e in list_runs(str(tmp_path))] == [3]
    assert "(before history)" in runs_table(list_runs(str(tmp_path)))[1]
    with pytest.raises(InputError, match="no runs recorded"):
        list_runs(str(tmp_path / "nothing"))
