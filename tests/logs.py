"""Reading the logs of the real processes a test starts (a Prefect server or worker, a Dask
scheduler or worker, moto): a background service that fails (a scheduler loop raising every
minute, say) writes a traceback there and nowhere a test would otherwise look."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# A Python traceback's first line, as logging and the interpreter print it.
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.M)


def tracebacks(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """Each traceback in ``text`` (its first line and the 30 after), except those whose text holds
    one of ``allowed`` (what a test provokes on purpose, named by its exception line)."""
    found = []
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
