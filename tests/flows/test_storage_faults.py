"""A fault of the whole output root (full, read-only) mid-run: no further pair is computed, the
summary still comes back and is printed, and one line says what happened."""

from __future__ import annotations

import errno
import json
import threading

from nst_batch.cli.main import main
from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like


def _batch(root, photos=6):
    """Pairs one at a time (batch: 1): the disk fills between two of them."""
    for i in range(photos):
        save(photo_like(32, 32, seed=i), root / "photos" / f"p{i}.png")
    save(painting_like(32, 32), root / "styles" / "s.png")
    manifest = root / "m.yaml"
    manifest.write_text(
        "defaults: {size: 32, scales: [1.0], iterations: 2}\nbatch: 1\noutput: out\nstyles: {s: styles/s.png}\n"
        "contents: [photos/*.png]\n"
    )
    return manifest


def test_a_full_output_root_stops_the_run_and_the_summary_is_still_printed(
    prefect_server, tmp_path, monkeypatch, capsys
):
    from nst_batch.tasks.output.storage import local as storage
    from nst_batch.tasks.pair import produce as batch

    manifest = _batch(tmp_path)
    out = tmp_path / "out"
    real_write, real_stylize = storage.write_atomic, batch.stylize
    state = {"full": False, "stylized": 0}
    lock = threading.Lock()

    def write(path, data):
        if state["full"] and str(path).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    def stylize(*args, **kwargs):
        with lock:
            state["stylized"] += 1
            if state["stylized"] == 2:  # the disk fills while the second pair runs
                state["full"] = True
        return real_stylize(*args, **kwargs)

    monkeypatch.setattr(storage, "write_atomic", write)
    monkeypatch.setattr(batch, "stylize", stylize)
    assert main(["run", str(manifest)]) == 1
    captured = capsys.readouterr()
    assert state["stylized"] == 2  # the 4 pairs after the failed write were not computed
    assert "6 pairs planned: 1 produced, 0 skipped, 5 failed" in captured.out
    assert "FAILED 4 pairs (p2__s, p3__s, p4__s, ...): not run: the output root takes no more files" in captured.out
    assert (
        "warning: stopped early: the output root takes no more files" in captured.out
        and "4 pairs were not run" in captured.out
    )
    assert "warning: summary.json was not written" in captured.out and "No space left on device" in captured.out
    assert "Traceback" not in captured.out + captured.err
    assert not (out / "summary.json").exists()
    assert json.loads((out / "p0__s.json").read_text())["name"] == "p0__s"
