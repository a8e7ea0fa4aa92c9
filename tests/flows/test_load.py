"""Load: 200 pairs at a tiny size through the flow; threads, file handles and memory stay bounded.
Prints the peak figures (`pytest -s tests/flows/test_load.py`)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from nst_batch.flows.stylize_batch import stylize_batch
from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Peaks(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.threads = self.fds = self.rss_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.threads = max(self.threads, threading.active_count(), _status("Threads"))
            self.fds = max(self.fds, len(os.listdir("/proc/self/fd")))
            self.rss_kb = max(self.rss_kb, _status("VmRSS"))
            time.sleep(0.05)


@pytest.mark.slow
def test_two_hundred_pairs(prefect_server, tmp_path):
    for i in range(20):
        save(photo_like(32, 32, seed=i), tmp_path / "photos" / f"p{i:02d}.png")
    styles = {f"s{j}": f"styles/s{j}.png" for j in range(10)}
    for j in range(10):
        save(painting_like(32, 32).roll(j, -1), tmp_path / "styles" / f"s{j}.png")
    (tmp_path / "m.yaml").write_text(
        "defaults: {size: 16, scales: [1.0], iterations: 1}\noutput: out\n"
        f"styles: {json.dumps(styles)}\ncontents: [photos/*.png]\n"
    )
    rss_before = _status("VmRSS")
    peaks = Peaks()
    peaks.start()
    began = time.monotonic()
    state = stylize_batch(manifest=str(tmp_path / "m.yaml"), return_state=True)
    seconds = time.monotonic() - began
    peaks.stop.set()
    peaks.join()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    print(
        f"\n200 pairs: {seconds:.1f} s; peak threads {peaks.threads}, open files {peaks.fds}, "
        f"RSS {peaks.rss_kb / 1024:.0f} MB (was {rss_before / 1024:.0f} MB before the run)"
    )
    assert state.is_completed(), state.message
    assert summary["counts"] == {"planned": 200, "produced": 200, "skipped": 0, "failed": 0}
    assert summary["style_targets"] == {"computed": 10, "from_cache": 0}
    assert peaks.threads < 64 and peaks.fds < 256
    assert (peaks.rss_kb - rss_before) / 1024 < 1024
