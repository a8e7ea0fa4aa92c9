import io

from nst_core import StepInfo
from tasks.progress import ProgressBar, ProgressLines, make_progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _steps():
    for i in (1, 2, 3):
        yield StepInfo(0, 2, 24, 32, i, 3, 0.1 * i, {"total": 5.0 - i} if i != 2 else None, scale_done=False)
    yield StepInfo(0, 2, 24, 32, 3, 3, 0.4, {"total": 2.0, "content": 1.0}, scale_done=True, stopped_early=True)


def test_a_terminal_gets_a_bar_and_a_pipe_gets_lines():
    assert isinstance(make_progress(_Tty()), ProgressBar)
    assert isinstance(make_progress(io.StringIO()), ProgressLines)


def test_bar_shows_scale_size_and_convergence():
    stream = _Tty()
    bar = make_progress(stream)
    for step in _steps():
        bar(step)
    text = stream.getvalue()
    assert "scale 1/2 32x24" in text and "3/3" in text and "converged at 3" in text


def test_lines_are_throttled_but_every_scale_end_is_shown():
    stream = io.StringIO()
    lines = ProgressLines(stream, every_s=3600)
    for step in _steps():
        lines(step)
    out = stream.getvalue().splitlines()
    assert len(out) == 2  # the first report, then the end of the scale
    assert out[-1].startswith("scale 1/2 32x24 iter 3/3 converged total=2 content=1")
