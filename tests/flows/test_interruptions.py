"""Kill `nst run` midway (SIGINT, SIGKILL): a re-run finishes the rest, recomputes nothing that
was finished, and no temporary file is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like

NST = str(Path(sys.executable).parent / "nst")


def _batch(root: Path, n: int = 6) -> Path:
    # Pairs of a few seconds each: the kill must land while pairs remain, even on a loaded machine
    # (with 80 iterations, a loaded CI machine once finished all six before the signal arrived).
    for i in range(n):
        save(photo_like(48, 64, seed=i), root / "photos" / f"p{i}.png")
    save(painting_like(40, 40), root / "styles" / "paint.png")
    manifest = root / "m.yaml"
    manifest.write_text(
        "defaults: {size: 32, scales: [1.0], iterations: 250, early_stop_rtol: 0}\n"
        "output: out\nstyles: {paint: styles/paint.png}\ncontents: [photos/*.png]\n"
    )
    return manifest


def _env(root: Path) -> dict[str, str]:
    """The test session's Prefect server (the harness), so each run skips a server start."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_rerun_after_a_kill_finishes_the_rest(prefect_server, tmp_path, sig):
    manifest = _batch(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [NST, "run", str(manifest)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.json"))) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no pair finished in 300 s"
        time.sleep(0.2)
    if sig == signal.SIGINT:
        os.kill(proc.pid, sig)  # like Ctrl-C in the terminal: the nst process itself
    else:
        os.killpg(proc.pid, sig)  # the process and its temporary Prefect server
    proc.wait(timeout=120)
    os.killpg(proc.pid, signal.SIGKILL) if _group_alive(proc.pid) else None
    finished = {p.stem for p in out.glob("*.json")}
    assert 2 <= len(finished) < 6
    assert not (out / "summary.json").exists() or sig == signal.SIGINT
    if sig == signal.SIGKILL:  # nothing could clean up: the page still says it is running, until nst gallery looks
        assert 'http-equiv="refresh"' in (out / "index.html").read_text()
        done = subprocess.run(
            [NST, "gallery", str(out)], env=_env(tmp_path), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    page = (out / "index.html").read_text()
    assert "This run was interrupted" in page and f"after {len(finished)} of 6 pairs" in page, page[:3000]
    assert 'http-equiv="refresh"' not in page and "in progress" not in page

    rerun = subprocess.run([NST, "run", str(manifest)], env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == len(finished)
    assert summary["counts"]["produced"] == 6 - len(finished) and summary["counts"]["failed"] == 0
    assert summary["style_targets"] == {"computed": 0, "from_cache": 1}
    assert {r["name"] for r in summary["pairs"] if r["status"] == "skipped"} == finished
    assert list(out.rglob("*.part")) == []
    # The interrupted run's live files went at the latest with the next run, which leaves none.
    assert not (out / "live").exists()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("runner", [[], ["--runner", "dask", "--dask-workers", "1"]], ids=["threads", "dask"])
def test_sigterm_ends_the_run_promptly_on_every_runner(prefect_server, tmp_path, runner):
    """A scheduler stopping the job (SIGTERM) ends `nst run` within its 5-s grace whatever the
    runner; a local Dask cluster once ignored it for minutes. The bound asserted leaves room for a
    loaded machine; the grace itself is INTERRUPT_GRACE_S."""
    manifest = _batch(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [NST, "run", str(manifest), *runner],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*.json")):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no pair finished in 300 s"
            time.sleep(0.2)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"\nSIGTERM with {runner or 'threads'}: ended in {took:.1f} s")
    assert took < 10, f"SIGTERM took {took:.1f} s"
    assert len(list(out.glob("*.json"))) < 6
