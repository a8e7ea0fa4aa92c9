"""Turn the core's :class:`~nst_core.StepInfo` events into something a person can watch."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from nst_core import StepInfo


def format_losses(losses: dict[str, float] | None) -> str:
    if not losses:
        return ""
    return " ".join(f"{k}={v:.4g}" for k, v in losses.items())


class ProgressBar:
    """A tqdm bar per scale, for a terminal."""

    def __init__(self, stream: TextIO, label: str = "") -> None:
        self._stream = stream
        self._label = label
        self._bar: tqdm | None = None
        self._scale = -1

    def __call__(self, step: StepInfo) -> None:
        if step.scale_index != self._scale:
            self.close()
            self._scale = step.scale_index
            desc = f"{self._label}scale {step.scale_index + 1}/{step.num_scales} {step.width}x{step.height}"
            self._bar = tqdm(total=step.max_iterations, desc=desc, file=self._stream, unit="it", leave=True, dynamic_ncols=True)
        assert self._bar is not None
        self._bar.n = step.iteration
        if step.losses:
            self._bar.set_postfix_str(format_losses({"loss": step.losses["total"]}), refresh=False)
        self._bar.refresh()
        if step.scale_done:
            if step.stopped_early:
                self._bar.set_postfix_str(f"converged at {step.iteration}", refresh=True)
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressLines:
    """Plain lines, at most one every ``every_s`` seconds plus one at the end of each scale: for
    logs, CI and pipes."""

    def __init__(self, stream: TextIO, label: str = "", every_s: float = 10.0) -> None:
        self._stream = stream
        self._label = label
        self._every_s = every_s
        self._last = -float("inf")

    def __call__(self, step: StepInfo) -> None:
        now = time.monotonic()
        if not step.scale_done and (step.losses is None or now - self._last < self._every_s):
            return
        self._last = now
        status = (" converged" if step.stopped_early else " done") if step.scale_done else ""
        print(
            f"{self._label}scale {step.scale_index + 1}/{step.num_scales} {step.width}x{step.height} "
            f"iter {step.iteration}/{step.max_iterations}{status} {format_losses(step.losses)} [{step.elapsed_s:.1f}s]",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        return None


def make_progress(stream: TextIO | None = None, label: str = "") -> ProgressBar | ProgressLines:
    """A bar on a terminal, plain lines otherwise."""
    out = stream if stream is not None else sys.stderr
    return ProgressBar(out, label) if out.isatty() else ProgressLines(out, label)
