"""The tasks ring's errors: one root, :class:`TaskError`.

:class:`InputError` is anything the user can fix before a run (an image file, a manifest, an
output location, a size that does not fit); :class:`StorageError` is a fault of the storage
(reads, writes, listings). Like the core's, a message names settings by their names
(``max_pixels``), and ``settings`` lists them so the CLI can add its flags.
"""

from __future__ import annotations

from collections.abc import Iterable


class TaskError(Exception):
    """Root of every error the tasks ring raises on purpose."""

    def __init__(self, message: str, settings: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.settings: tuple[str, ...] = tuple(settings)


class InputError(TaskError, ValueError):
    """Bad input, found before any work: a file, a manifest, an output location, a size."""


class StorageError(TaskError):
    """A read, write or listing failed; the message names the URI."""


class OutputRootError(StorageError):
    """The output root takes no more files at all (full, read-only, over quota, its bucket gone):
    every later pair would fail at its write, so none is computed (nst_batch.tasks.pair.produce)."""
