"""The tasks ring's errors, all of them: one root, :class:`TaskError`.

::

    TaskError
    ├── InputError (also a ValueError): anything the user can fix before a run
    │   ├── ManifestError: every problem of a manifest, with its field and line
    │   ├── ImageInputError: an input image cannot be used
    │   ├── OutputError: an output location cannot be written, or would overwrite an input
    │   ├── TooLargeError: the output would not fit in memory
    │   └── ClusterError: the Dask cluster cannot be reached, or cannot see the run's files
    ├── StorageError: a read, write or listing failed
    │   └── OutputRootError: the output root takes no more files at all
    └── PairFailed: one pair cannot be produced (its row in the summary says why)

Like the core's, a message names settings by their names (``max_pixels``), and ``settings``
lists them so the CLI can add its flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class TaskError(Exception):
    """Root of every error the tasks ring raises on purpose."""

    def __init__(self, message: str, settings: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.settings: tuple[str, ...] = tuple(settings)


class InputError(TaskError, ValueError):
    """Bad input, found before any work: a file, a manifest, an output location, a size."""


class Problem(Protocol):
    """One problem of a manifest: what planning.manifest.ManifestProblem holds."""

    @property
    def path(self) -> str: ...  # the setting, e.g. "styles.scream.style_weight"
    @property
    def message(self) -> str: ...
    @property
    def line(self) -> int | None: ...  # in the YAML, where known


class ManifestError(InputError):
    """Every problem of a manifest (``ManifestProblem``s: field, YAML line, message), reported together."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s): " + "; ".join(map(str, self.problems)))


class ImageInputError(InputError):
    """An input image cannot be used; the message names the file and says why, in one line."""


class OutputError(InputError):
    """An output location cannot be written, or would overwrite an input."""


class TooLargeError(InputError):
    """The requested output would not fit in memory; the message says how large would."""


class ClusterError(InputError):
    """The Dask scheduler cannot be reached, or its workers cannot see the run's inputs or output."""


class StorageError(TaskError):
    """A read, write or listing failed; the message names the URI."""


class OutputRootError(StorageError):
    """The output root takes no more files at all (full, read-only, over quota, its bucket gone):
    every later pair would fail at its write, so none is computed (nst_batch.tasks.pair.pipeline)."""


class PairFailed(TaskError):
    """One pair cannot be produced; the message is the one-line reason for the summary."""
