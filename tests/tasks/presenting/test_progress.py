import io

from nst_batch.core import StepInfo
from nst_batch.tasks.presenting.progress import (
    BatchBar,
    BatchLines,
    ProgressBar,
    ProgressLines,
    format_duration,
    make_batch_progress,
    make_progress,
)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _steps():
    # Two scales: 3 iterations of 24x32 (768 px each), then 3 of 48x64 (3072 px each: 4x the work).
    small, large = 24 * 32, 48 * 64
    for i in (1, 2, 3):
        yield StepInfo(
            0,
            2,
            24,
            32,
            i,
            3,
            0.1 * i,
            {"total": 5.0 - i} if i != 2 else None,
            work_done=small * i,
            work_left=small * (3 - i) + 3 * large,
        )
    yield StepInfo(
        0,
        2,
        24,
        32,
        3,
        3,
        0.4,
        {"total": 2.0, "content": 1.0},
        scale_done=True,
        stopped_early=True,
        work_done=3 * small,
        work_left=3 * large,
    )
    yield StepInfo(
        1, 2, 48, 64, 3, 3, 1.6, {"total": 1.0}, scale_done=True, work_done=3 * small + 3 * large, work_left=0
    )


def test_a_terminal_gets_a_bar_and_a_pipe_gets_lines():
    assert isinstance(make_progress(_Tty()), ProgressBar)
    assert isinstance(make_progress(io.StringIO()), ProgressLines)
    assert isinstance(make_batch_progress(_Tty()), BatchBar)
    assert isinstance(make_batch_progress(io.StringIO()), BatchLines)


def test_the_eta_weighs_iterations_by_their_pixels():
    first = next(_steps())
    assert first.progress == 768 / (3 * 768 + 3 * 3072)
    # 0.1 s for 768 pixel-iterations: the 10,752 left (2 x 768 + 3 x 3,072) take 1.4 s, not 5 x 0.1 s.
    assert abs(first.eta_s() - 1.4) < 1e-9
    assert StepInfo(0, 1, 1, 1, 0, 1, 0.0).eta_s() is None


def test_one_bar_for_the_whole_run_shows_scale_size_eta_and_convergence():
    stream = _Tty()
    bar = make_progress(stream)
    for step in _steps():
        bar(step)
    text = stream.getvalue()
    assert "scale 1/2 32x24 it 3/3 (converged at 3)" in text and "scale 2/2 64x48" in text
    assert "ETA 2s" in text and "100%" in text


def test_lines_are_throttled_but_every_scale_end_is_shown_with_an_eta():
    stream = io.StringIO()
    lines = ProgressLines(stream, every_s=3600)
    for step in _steps():
        lines(step)
    out = stream.getvalue().splitlines()
    assert len(out) == 3  # the first report, then the end of each scale
    assert out[1].startswith("scale 1/2 32x24 iter 3/3 converged total=2 content=1")
    assert out[1].endswith("[0.4s, 20%, ETA 2s]") and out[2].endswith("[1.6s, 100%, ETA 0s]")


def test_batch_lines_count_pairs_and_estimate_from_produced_ones():
    stream = io.StringIO()
    lines = BatchLines(stream)
    lines.planned(4)
    lines.finished({"name": "a", "status": "skipped"})
    lines.finished({"name": "b", "status": "produced", "wall_time_s": 10.0})
    lines.step("c", next(_steps()))
    lines.finished({"name": "c", "status": "failed", "reason": "broken.png: not an image"})
    out = stream.getvalue().splitlines()
    assert out[0].startswith("pair 1/4 a: skipped")
    assert out[1].startswith("pair 2/4 b: produced in 10.0s") and "ETA 20s" in out[1]  # two more pairs at 10 s
    assert out[2].startswith("pair 3/4 c: failed broken.png: not an image") and "ETA 10s" in out[2]


def test_batch_bar_shows_the_pair_at_work():
    stream = _Tty()
    bar = BatchBar(stream)
    bar.planned(2)
    bar.step("photo__starry", next(_steps()))
    bar.finished({"name": "x", "status": "failed", "reason": "nope"})
    bar.close()
    text = stream.getvalue()
    assert "photo__starry: scale 1/2 32x24 it 1/3" in text and "FAILED x: nope" in text and "1 failed" in text


def test_durations_read_well():
    assert [format_duration(s) for s in (None, 4.4, 65, 3725)] == ["?", "4s", "1m05s", "1h02m"]


def test_the_eta_leaves_out_the_pairs_a_rerun_will_skip():
    """A partial re-run: 6 pairs, 4 with outputs already (likely skips). After one produced pair of
    10 s the ETA is one more pair, not five; a likely skip that turns out to need running counts again."""
    stream = io.StringIO()
    lines = BatchLines(stream)
    lines.planned(6, likely_done=4)
    lines.finished({"name": "a", "status": "produced", "wall_time_s": 10.0})
    assert "ETA 10s" in stream.getvalue().splitlines()[-1]  # was 50s: every pair left counted
    lines.finished({"name": "b", "status": "skipped"})
    assert "ETA 10s" in stream.getvalue().splitlines()[-1]
    lines.finished({"name": "c", "status": "produced", "wall_time_s": 10.0})
    assert "ETA ?" in stream.getvalue().splitlines()[-1]  # only likely skips left: not known to be skips yet
    lines.finished({"name": "d", "status": "produced", "wall_time_s": 10.0})  # a likely skip ran
    assert "ETA 20s" in stream.getvalue().splitlines()[-1]  # so the two left are no longer assumed skips
    lines.finished({"name": "e", "status": "skipped"})
    lines.finished({"name": "f", "status": "skipped"})
    assert "ETA 0s" in stream.getvalue().splitlines()[-1]


def test_after_a_parameter_change_the_eta_never_says_0s_with_pairs_to_produce():
    """The issue's case: 8 pairs whose outputs all exist but 2, and 3 of the 6 whose parameters changed."""
    stream = io.StringIO()
    lines = BatchLines(stream)
    lines.planned(8, likely_done=6)
    lines.finished({"name": "new1", "status": "produced", "wall_time_s": 3.6})
    lines.finished({"name": "new2", "status": "produced", "wall_time_s": 3.6})
    assert "ETA 0s" not in stream.getvalue().splitlines()[-1] and "ETA ?" in stream.getvalue().splitlines()[-1]
    lines.finished({"name": "changed1", "status": "produced", "wall_time_s": 3.6})
    assert "ETA 18s" in stream.getvalue().splitlines()[-1]  # 5 left, none assumed a skip any more


def test_likely_done_is_one_listing_of_the_output_root(tmp_path):
    from nst_batch.tasks.pair.done import likely_done
    from nst_batch.tasks.planning.plan import load_plan
    from tests.flows.helpers import make_batch

    plan = load_plan(str(make_batch(tmp_path)))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a__stripes", "b__waves"):
        (out / f"{name}.png").write_bytes(b"x")
        (out / f"{name}.json").write_text("{}")
    (out / "a__waves.json").write_text("{}")  # a sidecar without its output does not count
    assert likely_done(plan.pairs, plan.settings, force=False) == 2
    assert likely_done(plan.pairs, plan.settings, force=True) == 0


def test_the_eta_shares_the_pairs_left_among_the_runners_slots_and_drops_warm_up():
    """Two Dask workers run two pairs at a time: 8 pairs left at 10 s each is 4 rounds, 40 s, not
    80 s. Each slot's first pair (warming up) counts only until other pairs have been measured."""
    stream = io.StringIO()
    lines = BatchLines(stream)
    lines.planned(9, slots=2)
    lines.finished({"name": "a", "status": "produced", "wall_time_s": 10.0})
    assert "ETA 40s" in stream.getvalue().splitlines()[-1]
    lines.finished({"name": "b", "status": "produced", "wall_time_s": 10.0})
    assert "ETA 40s" in stream.getvalue().splitlines()[-1]  # 7 left: 4 rounds
    lines.finished({"name": "c", "status": "produced", "wall_time_s": 4.0})  # warm now: 4 s a pair
    assert "ETA 12s" in stream.getvalue().splitlines()[-1]  # 6 left: 3 rounds of 4 s


def test_the_style_targets_are_said_in_words():
    from nst_batch.tasks.running.summary import targets_in_words

    assert (
        targets_in_words({"computed": 0, "from_cache": 0})
        == "none needed (every pair was done earlier or failed first)"
    )
    assert targets_in_words({"computed": 2, "from_cache": 0}) == "2 computed"
    assert (
        targets_in_words({"computed": 1, "from_cache": 2}) == "1 computed, 2 read from the cache (made by earlier runs)"
    )
