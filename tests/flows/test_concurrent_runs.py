"""Two runs on the same output root at once corrupt neither the style cache nor the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nst_batch.core import targets_from_bytes
from tests.flows.helpers import make_batch

NST = str(Path(sys.executable).parent / "nst")


@pytest.mark.slow
def test_two_runs_at_once(prefect_server, tmp_path):
    from prefect.settings import PREFECT_API_URL

    manifest = make_batch(tmp_path)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    runs = [
        subprocess.Popen(
            [NST, "run", str(manifest)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=600)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    out = tmp_path / "out"
    for name in ("a__stripes", "a__waves", "b__stripes", "b__waves"):
        with Image.open(out / f"{name}.png") as image:
            image.load()  # a complete, decodable file
        assert json.loads((out / f"{name}.json").read_text())["name"] == name
    entries = list((out / ".cache" / "style-targets").iterdir())
    # An entry is a header line naming its key and style, then the targets
    # (nst_batch.tasks.pair.target_cache.cache_entry).
    assert len(entries) == 2 and all(targets_from_bytes(e.read_bytes().partition(b"\n")[2]) for e in entries)
    assert list(out.rglob("*.part")) == []
    json.loads((out / "summary.json").read_text())  # whole, whichever run wrote it last
