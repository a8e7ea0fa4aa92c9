"""What ``nst`` prints: summaries, notes, and errors on one line in the CLI's words (the settings an
error names said as this command's flags), with the exit codes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TextIO

from nst_batch.cli.parser import DEFAULTS, said_as_flags
from nst_batch.core.config import StyleConfig
from nst_batch.tasks.basics import plural
from nst_batch.tasks.pair.records import Failure, RunSummary

if TYPE_CHECKING:
    from nst_batch.tasks.planning.jobs import PairJob, Plan

EXIT_FAILED = 1


EXIT_BAD_INPUT = 2


def graphs_line(reports: list[dict[str, Any]]) -> str:
    """``, CUDA graphs: 2 of 2 scales replayed`` (how many from graphs an earlier photo of the shape
    captured, and the capture's error), or nothing off CUDA."""
    scales = [r for r in reports if r.get("graphed") is not None]
    if not scales:
        return ""
    errors = [r["capture_error"] for r in scales if r.get("capture_error")]
    replayed = sum(bool(r["graphed"]) for r in scales)
    kept = sum(bool(r.get("graph_kept")) for r in scales)
    return (
        f", CUDA graphs: {replayed} of {len(scales)} scales replayed"
        + (f", {kept} from an earlier photo's capture" if kept else "")
        + (f" (capture failed: {errors[0]})" if errors else "")
    )


def print_notes(plan: Plan) -> None:
    """What the plan left out or changed without it being a problem (files skipped in a listed
    folder, a name another manifest's result holds): one line each, on stderr."""
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)


class DecodeLines:
    """``decoded 40/120 images`` on stderr every 2 s (and at the end) while --decode works."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.last = stream, time.monotonic()

    def __call__(self, done: int, total: int, uri: str) -> None:
        now = time.monotonic()
        if done == total or now - self.last >= 2.0:
            self.last = now
            print(f"decoded {done}/{total} images" + (f" (now {uri})" if uri else ""), file=self.stream, flush=True)


def differences(cfg: StyleConfig) -> str:
    """The parameters that differ from the defaults (size and iterations always): what a style's or
    a pair's overrides did."""
    from nst_batch.core.config import show

    always = ("size", "iterations")
    shown = [f.name for f in fields(cfg) if f.name in always or getattr(cfg, f.name) != getattr(DEFAULTS, f.name)]
    return ", ".join(f"{name} {show(getattr(cfg, name))}" for name in [*always, *(n for n in shown if n not in always)])


def swept(pairs: Sequence[PairJob]) -> str:
    """`` (6 of them sweep points of 1 pair)``, or nothing without a sweep."""
    points = [p for p in pairs if p.sweep]
    return (
        f" ({len(points)} of them sweep points of {plural(len({(p.sweep_of, p.content_uri) for p in points}), 'pair')})"
        if points
        else ""
    )


def print_summary(summary: RunSummary) -> None:
    from nst_batch.tasks.running.summary import targets_in_words

    c = summary.counts
    wall = time.monotonic() - _STARTED
    print(
        f"{c['planned']} pairs planned: {c['produced']} produced, {c['skipped']} skipped, {c['failed']} failed "
        f"in {wall:.1f}s ({summary.wall_time_s:.1f}s in the flow); style targets: "
        f"{targets_in_words(summary.style_targets)}"
    )
    if c["skipped"]:
        print(f"  {plural(c['skipped'], 'pair')} done by earlier runs (skipped): their images are in the gallery")
    for reason, names in _by_reason(summary.failures).items():
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        print(
            f"  FAILED {names[0]}: {reason}" if len(names) == 1 else f"  FAILED {len(names)} pairs ({shown}): {reason}"
        )
    for warning in summary.warnings:
        print(f"  warning: {warning}")
    print(f"output: {summary.output}  gallery: {summary.gallery or 'not built'}")


def _by_reason(failures: list[Failure]) -> dict[str, list[str]]:
    """Failed pairs grouped by their reason: a cluster lost mid-run is one line, not 10,000."""
    groups: dict[str, list[str]] = {}
    for failure in failures:
        groups.setdefault(failure.reason, []).append(failure.name)
    return groups


_STARTED = time.monotonic()  # reset by main(): wall times reported include start-up


def mark_start() -> None:
    global _STARTED
    _STARTED = time.monotonic()


def report(word: str, exc: BaseException, code: int, flags: dict[str, str] | None = None) -> int:
    print(f"nst: {word}: {_in_cli_words(exc, flags or {})}", file=sys.stderr)
    return code


def flags_of(parser: argparse.ArgumentParser, command: str | None) -> dict[str, str]:
    """A command's settings and their flags: ``max_pixels`` -> ``--max-pixels``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return {
                a.dest: next(o for o in a.option_strings if o.startswith("--"))
                for a in sub._actions
                if any(o.startswith("--") for o in a.option_strings) and a.dest != "help"
            }
    return {}


def _in_cli_words(exc: BaseException, flags: dict[str, str]) -> str:
    """The message on one line, with the settings it names said as this command's flags."""
    return said_as_flags(_one_line(exc), flags, getattr(exc, "settings", ()))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
