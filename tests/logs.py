"""Reading the logs of the real processes a test starts (a Prefect server or worker, a Dask
scheduler or worker, moto): a background service that fails (a scheduler loop raising every
minute, say) writes a traceback there and nowhere a test would otherwise look."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# A Python traceback's first line, as logging and the interpreter print it.
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.M)
# A log record's first line, as Prefect writes it: "16:47:12.237 | ERROR   | logger - message".
_RECORD = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)? \| ", re.M)
# Known upstream, and harmless: Prefect's server on SQLite now and then loses a write race and
# logs it with its traceback (PrefectHQ/prefect#18934, open: "database is locked" even in small
# examples; ../shared/research/prefect.md, section 7). Seen here once, in a fresh-clone CI run on
# 2 cores: the worker channel's heartbeat write, which the worker's next heartbeat (every few
# seconds) makes again; the run it watched completed. Only a record with that message *and*
# that cause is let through: any other traceback, or that message with another cause, still fails.
UPSTREAM_RACES = (("Worker channel heartbeat persistence failed", "sqlite3.OperationalError: database is locked"),)


def without_upstream_races(text: str) -> str:
    """``text`` without the log records of :data:`UPSTREAM_RACES` (a record runs from its first
    line to the next record's)."""
    starts = [m.start() for m in _RECORD.finditer(text)]
    if not starts:
        return text
    bounds = zip(starts, [*starts[1:], len(text)], strict=True)
    head = text[: starts[0]]
    kept = [
        text[a:b]
        for a, b in bounds
        if not any(message in text[a:b].split("\n", 1)[0] and cause in text[a:b] for message, cause in UPSTREAM_RACES)
    ]
    return head + "".join(kept)


def tracebacks(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """Each traceback in ``text`` (its first line and the 30 after), except those whose text holds
    one of ``allowed`` (what a test provokes on purpose, named by its exception line)."""
    found = []
    text = without_upstream_races(text)
    for match in _TRACEBACK.finditer(text):
        lines = text[match.start() :].splitlines()
        # A traceback ends at its first unindented line after the header: the exception itself.
        end = next(
            (i for i, line in enumerate(lines[1:], 1) if line and not line.startswith((" ", "\t"))), len(lines) - 1
        )
        chained = "\n".join(lines[: end + 1])
        if not any(a in chained for a in allowed):
            found.append("\n".join(lines[: end + 1][-30:]))
    return found


def assert_no_traceback(log: Path | str, what: str, allowed: Iterable[str] = ()) -> None:
    text = Path(log).read_text(errors="replace") if isinstance(log, Path) else log
    found = tracebacks(text, allowed)
    assert not found, f"{what} logged {len(found)} traceback(s); the last:\n{found[-1]}"
