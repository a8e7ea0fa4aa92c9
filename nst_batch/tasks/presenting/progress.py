"""Turn the core's :class:`~nst_batch.core.StepInfo` events, and a batch's pair events, into something a
person can watch: one bar on a terminal, plain lines with an ETA in a log."""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol, TextIO

from tqdm import tqdm

from nst_batch.core import StepInfo
from nst_batch.tasks.pair.records import PairRow


def format_losses(losses: dict[str, float] | None) -> str:
    if not losses:
        return ""
    return " ".join(f"{k}={v:.4g}" for k, v in losses.items())


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _where(step: StepInfo) -> str:
    return (
        f"scale {step.scale_index + 1}/{step.num_scales} {step.width}x{step.height} it "
        f"{step.iteration}/{step.max_iterations}"
    )


class ProgressBar:
    """One bar for the whole run, for a terminal: the share of the planned work done (weighted by
    pixels, so the last scale's slower iterations count for what they cost) and an ETA from it."""

    def __init__(self, stream: TextIO, label: str = "") -> None:
        self._stream = stream
        self._label = label
        self._bar: tqdm | None = None
        self._loss = ""

    def __call__(self, step: StepInfo) -> None:
        if self._bar is None:
            # Everything but the bar goes in desc: tqdm prefixes a custom format's postfix with ", ".
            self._bar = tqdm(
                total=1000,
                file=self._stream,
                dynamic_ncols=True,
                leave=True,
                bar_format="{percentage:3.0f}%|{bar}| {desc}",
            )
        if step.losses:
            self._loss = f" loss={step.losses['total']:.4g}"
        status = f" (converged at {step.iteration})" if step.scale_done and step.stopped_early else ""
        self._bar.n = round(1000 * step.progress)
        self._bar.set_description_str(
            f"{self._label}{_where(step)}{status}, {format_duration(step.elapsed_s)} elapsed, "
            f"ETA {format_duration(step.eta_s())}{self._loss}",
            refresh=False,
        )
        self._bar.refresh()
        if step.scale_done and step.scale_index == step.num_scales - 1:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressLines:
    """Plain lines, at most one every ``every_s`` seconds plus one at the end of each scale: for
    logs, CI and pipes. Each line has the run's ETA."""

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
            f"iter {step.iteration}/{step.max_iterations}{status} {format_losses(step.losses)} "
            f"[{step.elapsed_s:.1f}s, {100 * step.progress:.0f}%, ETA {format_duration(step.eta_s())}]",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        return None


def make_progress(stream: TextIO | None = None, label: str = "") -> ProgressBar | ProgressLines:
    """A bar on a terminal, plain lines otherwise."""
    out = stream if stream is not None else sys.stderr
    return ProgressBar(out, label) if out.isatty() else ProgressLines(out, label)


# --- a batch: pairs done of total, the pair at work, an ETA --------------------------------------


class BatchListener(Protocol):
    def planned(self, total: int, likely_done: int = 0, slots: int = 1) -> None: ...

    def step(self, pair: str, info: StepInfo) -> None: ...

    def finished(self, row: dict[str, Any]) -> None: ...


_listener: BatchListener | None = None
_listener_lock = threading.Lock()


@contextlib.contextmanager
def listening(listener: BatchListener) -> Iterator[None]:
    """Send this process's batch events to ``listener`` (``nst run`` shows them); pairs running
    in other processes (a Dask cluster) report only when they finish."""
    global _listener
    with _listener_lock:
        _listener = listener
        _reported.clear()
    try:
        yield
    finally:
        with _listener_lock:
            _listener = None


def batch_planned(total: int, likely_done: int = 0, slots: int = 1) -> None:
    """``likely_done``: pairs whose output and sidecar are already there (a re-run will most likely
    skip them): the ETA leaves them out, and takes each back in if it turns out to need running.
    ``slots``: pairs the runner works on at once (the ETA divides the work among them)."""
    if _listener is not None:
        _listener.planned(total, likely_done, slots)


def pair_step(pair: str, info: StepInfo) -> None:
    if _listener is not None:
        _listener.step(pair, info)


_reported: set[str] = set()  # pairs of the current listener already reported


def pair_finished(row: PairRow | dict[str, Any], run_id: str = "") -> None:
    """A pair's row (or its facts, as a Dask event brings them), as soon as it is done. In the
    process that listens (``nst run``), to its listener; on a Dask worker, as an event of the
    run's topic (see :func:`pair_topic`), which the client hands back to this function as it
    arrives: a chunk's pairs report one by one, not all at its end."""
    row = row.facts() if isinstance(row, PairRow) else row
    if _listener is not None:
        with _listener_lock:
            if row["name"] in _reported:
                return
            _reported.add(row["name"])
        _listener.finished(row)
    elif run_id:
        _to_dask_client(pair_topic(run_id), row)


def pair_topic(run_id: str) -> str:
    """The Dask event topic of one flow run's finished pairs (a shared cluster runs many)."""
    return f"nst-pair-{run_id}"


def _to_dask_client(topic: str, row: dict[str, Any]) -> None:
    distributed = sys.modules.get("distributed")  # only a Dask worker has imported it
    if distributed is None:
        return
    try:
        worker = distributed.get_worker()
    except ValueError:
        return  # not in a Dask worker (a thread runner in a process that imported Dask)
    try:
        worker.log_event(topic, row)  # a row's facts: they go through the scheduler to the client
    except Exception:  # noqa: BLE001 - the progress display must never fail a pair; the chunk's rows still report
        pass


def remote_pair_finished(event: tuple[float, Any]) -> None:
    """A Dask event handler (``Client.subscribe_topic``): an event is ``(timestamp, row)``."""
    row = event[1]
    if isinstance(row, dict) and isinstance(row.get("name"), str):
        pair_finished(row)


def pairs_finished(rows: list[PairRow]) -> None:
    """Rows of a finished chunk: those its task already reported (it ran in this process) are
    skipped; a chunk that ran elsewhere (a Dask worker) is reported here, as it ends."""
    for row in rows:
        pair_finished(row)


class BatchProgress:
    """What a batch's progress display knows: pairs done of the total, the pair at work, and an
    ETA from the measured seconds per produced pair (skipped pairs cost ~nothing and are not
    counted in the speed)."""

    def __init__(self) -> None:
        self.total = 0
        self.slots = 1  # pairs the runner works on at once
        self.likely_done = 0  # pairs expected to be skipped and not yet found so
        self.expected_to_run = 0  # pairs not among the likely skips
        self.ran = 0  # pairs produced or failed so far
        self.done = 0
        self.failed = 0
        self.began = time.monotonic()
        self.produced_seconds: list[float] = []
        self.current: tuple[str, StepInfo] | None = None
        self.lock = threading.Lock()

    def eta_s(self) -> float | None:
        left = self.total - self.done - self.likely_done  # only the pairs that will run
        if left <= 0:
            # Only likely skips are left: whether they are skips is known when each is reached
            # (its fingerprint), so until then the ETA is unknown, not 0.
            return None if self.likely_done > 0 else 0.0
        # The median of the recent pairs, a collection's pairs being alike (a mean would promise
        # minutes for a run of seconds); each slot's first pair pays for warming up (measured: 4.0 s
        # against 2.5 s for the pairs after it), so it counts only until there is nothing else.
        warm = self.produced_seconds[self.slots :] or self.produced_seconds
        per_pair = statistics.median(warm[-50:]) if warm else None
        current = self.current[1] if self.current else None
        if per_pair is None and current is not None and current.progress > 0:
            per_pair = current.elapsed_s / current.progress
        if per_pair is None:
            return None
        # The pairs left go round the runner's slots; the pair this process is working on is that
        # far through its first round (pairs on other processes report only when they finish).
        rounds = math.ceil(left / max(1, self.slots))
        return per_pair * (rounds - (current.progress if current is not None else 0.0))

    def start(self, total: int, likely_done: int, slots: int) -> None:
        self.total, self.likely_done, self.slots, self.began = total, likely_done, max(1, slots), time.monotonic()
        self.expected_to_run, self.ran = total - likely_done, 0

    def record(self, row: dict[str, Any]) -> None:
        self.done += 1
        if row.get("status") == "skipped" and self.likely_done > 0:
            self.likely_done -= 1  # an expected skip, found
        elif row.get("status") != "skipped":
            self.ran += 1
            if self.ran > self.expected_to_run:
                # A likely skip ran (its parameters or inputs changed): such a change usually
                # touches the other likely skips too, so none is assumed a skip any more.
                self.likely_done = 0
        self.failed += row.get("status") == "failed"
        if row.get("status") == "produced" and row.get("wall_time_s"):
            self.produced_seconds.append(float(row["wall_time_s"]))
        if self.current is not None and self.current[0] == row.get("name"):
            self.current = None


class BatchBar(BatchProgress):
    """One bar for the whole batch, for a terminal."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._bar: tqdm | None = None

    def planned(self, total: int, likely_done: int = 0, slots: int = 1) -> None:
        with self.lock:
            self.start(total, likely_done, slots)
            self._bar = tqdm(
                total=total,
                file=self._stream,
                dynamic_ncols=True,
                leave=True,
                unit="pair",
                bar_format="{n_fmt}/{total_fmt} pairs |{bar}| {desc}",
            )
            self._show()

    def step(self, pair: str, info: StepInfo) -> None:
        with self.lock:
            self.current = (pair, info)
            self._show()

    def finished(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.record(row)
            if row.get("status") == "failed" and self._bar is not None:
                self._bar.write(f"FAILED {row['name']}: {row.get('reason', '')}", file=self._stream)
            for note in row.get("notes") or []:
                if self._bar is not None:
                    self._bar.write(f"note {row['name']}: {note}", file=self._stream)
            self._show()

    def _show(self) -> None:
        if self._bar is None:
            return
        self._bar.n = self.done
        at = f"{self.current[0]}: {_where(self.current[1])}, " if self.current else ""
        failed = f"{self.failed} failed, " if self.failed else ""
        self._bar.set_description_str(
            f"{failed}{at}{format_duration(time.monotonic() - self.began)} elapsed, "
            f"ETA {format_duration(self.eta_s())}",
            refresh=False,
        )
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class BatchLines(BatchProgress):
    """A plain line per finished pair, with the same facts and an ETA: for logs."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def planned(self, total: int, likely_done: int = 0, slots: int = 1) -> None:
        with self.lock:
            self.start(total, likely_done, slots)

    def step(self, pair: str, info: StepInfo) -> None:
        with self.lock:
            self.current = (pair, info)

    def finished(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.record(row)
            detail = (
                row.get("reason", "")
                if row.get("status") == "failed"
                else (
                    f"in {row['wall_time_s']:.1f}s"
                    if row.get("status") == "produced" and row.get("wall_time_s")
                    else ""
                )
            )
            print(
                f"pair {self.done}/{self.total} {row['name']}: {row.get('status')} {detail}".rstrip()
                + f" [{format_duration(time.monotonic() - self.began)} elapsed, ETA {format_duration(self.eta_s())}]",
                file=self._stream,
                flush=True,
            )
            for note in row.get("notes") or []:
                print(f"  note {row['name']}: {note}", file=self._stream, flush=True)

    def close(self) -> None:
        return None


def make_batch_progress(stream: TextIO | None = None) -> BatchBar | BatchLines:
    out = stream if stream is not None else sys.stderr
    return BatchBar(out) if out.isatty() else BatchLines(out)
