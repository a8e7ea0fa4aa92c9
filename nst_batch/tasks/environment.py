"""Every environment variable the tasks ring reads, in one place: its name, what it sets, and the
one way its text is read (a bad value is one line naming the variable and what it must be). Each is
read where and when it applies (a deployment's job variables set them per flow run), never at
import. The core reads one of its own (``NST_CAFFE_WEIGHTS``, nst_batch.core.weights)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nst_batch.tasks.errors import InputError
from nst_batch.tasks.planning.runtime import MAX_THREADS

T = TypeVar("T")

MAX_DASK_WORKERS = 256
MAX_PAIRS_PER_GPU = 64


def whole_number(low: int, high: int, auto: bool = False) -> Callable[[str], int]:
    """A parser of ``low..high`` (``auto``: 0 means "choose for me", written so)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ValueError(
                f"must be 0 (auto) or a whole number 1..{high}" if auto else f"must be a whole number {low}..{high}"
            )
        return value

    return parse


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not 0 < value < math.inf:  # nan fails this too
        raise ValueError("must be a number of seconds > 0")
    return value


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def byte_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise ValueError("must be a size like 8G, 8GiB, 500M or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parsed(setting: str, text: str, parse: Callable[[str], T]) -> T:
    """``text`` read by ``parse``; a value it refuses is one :class:`InputError` naming ``setting``
    (a variable, a manifest key or a flag: the same words for each)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise InputError(f"{setting} {exc}, got {text[:40]!r}", settings=[setting]) from None


@dataclass(frozen=True)
class Variable(Generic[T]):
    name: str
    sets: str  # what it sets, for whoever reads this table
    parse: Callable[[str], T]

    def read(self, environ: Mapping[str, str] | None = None) -> T | None:
        """Its value, or None when it is unset or blank."""
        text = (os.environ if environ is None else environ).get(self.name, "")
        return parsed(self.name, text, self.parse) if text.strip() else None


TASK_RUNNER = Variable("NST_TASK_RUNNER", "the flow's task runner: threads (the default) or dask", str.strip)
DASK_ADDRESS = Variable("NST_DASK_ADDRESS", "a Dask scheduler started elsewhere, for NST_TASK_RUNNER=dask", str.strip)
DASK_WORKERS = Variable(
    "NST_DASK_WORKERS", "worker processes of a local Dask cluster", whole_number(1, MAX_DASK_WORKERS)
)
DASK_NO_WORKERS_S = Variable(
    "NST_DASK_NO_WORKERS_S", "seconds without any Dask worker before a run gives up (120)", seconds
)
THREADS = Variable("NST_THREADS", "compute threads per pair (0: auto)", whole_number(0, MAX_THREADS, auto=True))
OMP_NUM_THREADS = Variable(
    "OMP_NUM_THREADS", "OpenMP's own, read when NST_THREADS is unset", whole_number(0, MAX_THREADS, auto=True)
)
MAX_MEMORY = Variable("NST_MAX_MEMORY", "the memory a pair may use, instead of the free GPU memory or RAM", byte_size)
PAIRS_PER_GPU = Variable("NST_PAIRS_PER_GPU", "pairs run at once on each GPU", whole_number(1, MAX_PAIRS_PER_GPU))

VARIABLES: tuple[Variable[Any], ...] = (
    TASK_RUNNER, DASK_ADDRESS, DASK_WORKERS, DASK_NO_WORKERS_S, THREADS, OMP_NUM_THREADS, MAX_MEMORY, PAIRS_PER_GPU,
)  # fmt: skip
