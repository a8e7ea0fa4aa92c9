"""Checks on where a run will write, made before any work: an output that cannot be written, or
that is one of the run's inputs, is bad input found in a second rather than after the optimisation."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from nst_batch.tasks.errors import OutputError, StorageError
from nst_batch.tasks.output.atomic import not_regular
from nst_batch.tasks.output.layout import WRITE_PROBE
from nst_batch.tasks.output.storage import join, parent, storage_for


def check_not_inputs(
    outputs: Mapping[str, str | os.PathLike[str]], inputs: Mapping[str, str | os.PathLike[str]]
) -> None:
    """Refuse an output that is one of the inputs, also through a symlink or another spelling of the
    path, or two outputs that are the same file. Keys name the roles (``output``, ``content``)."""
    items = list(outputs.items())
    for i, (role, path) in enumerate(items):
        for other_role, other in [*items[:i], *inputs.items()]:
            if same_file(path, other):
                raise OutputError(
                    f"{role} {path} is the {other_role} {other} (the same file): it would be overwritten; "
                    f"choose another {role}",
                    settings=[role, other_role],
                )


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    if storage_for(str(a)).local_path(str(a)) is None or storage_for(str(b)).local_path(str(b)) is None:
        return str(a) == str(b)  # objects (s3://): one key, one object
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False  # one of them does not exist (yet)


def check_replaceable(path: str | os.PathLike[str], role: str = "output") -> None:
    """``path`` does not exist or is a regular file: a device, a FIFO, a socket, a folder or a
    symlink there is refused before any work rather than replaced by a file (nst_batch.tasks.output.atomic)."""
    if Path(path).is_dir() and not Path(path).is_symlink():
        raise OutputError(f"{role} {path} is a folder; give a file name", settings=[role])
    kind = not_regular(path)
    if kind:
        raise OutputError(
            f"{role} {path} exists and is {kind}, not a regular file; refusing to replace it (remove it or choose "
            f"another {role})",
            settings=[role],
        )


def check_writable_file(path: str | os.PathLike[str], role: str = "output") -> None:
    """The folder that will hold ``path`` exists or can be created and accepts a new file, and
    ``path`` itself is not something a write would clobber (:func:`check_replaceable`). An
    object (``s3://``): its prefix takes a probe object."""
    if storage_for(str(path)).local_path(str(path)) is None:
        check_writable_root(parent(str(path)), role)
        return
    check_replaceable(path, role)
    check_writable_folder(Path(path).parent, role, shown=str(path))


def check_writable_folder(folder: str | os.PathLike[str], role: str = "output", shown: str | None = None) -> None:
    """A local folder that exists and accepts a new file, or whose nearest existing ancestor does."""
    shown = shown or str(folder)
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{role} {shown}: cannot write there: {existing} is a file, not a folder", settings=[role])
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{WRITE_PROBE}.", dir=existing)
    except OSError as exc:
        raise OutputError(
            f"{role} {shown}: cannot write in {existing}: {exc.strerror or exc}", settings=[role]
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_writable_root(root: str, role: str = "output") -> None:
    """An output root, local or ``s3://bucket/prefix``: S3 is asked to store (and remove) a probe
    object, which proves the bucket exists and that the credentials may put there."""
    storage = storage_for(root)
    local = storage.local_path(root)
    if local is not None:
        check_writable_folder(local, role)
        return
    probe = join(root, WRITE_PROBE)
    try:
        storage.write_bytes(probe, b"", "application/octet-stream")
    except StorageError as exc:
        raise OutputError(f"{role} {root}: cannot write there: {exc}", settings=[role]) from None
    try:
        storage.delete(probe)
    except StorageError:
        pass  # allowed to put but not to delete: the empty probe stays, harmless
