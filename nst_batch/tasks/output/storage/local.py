"""Local disk: files written atomically (a reader never sees half a file), folders as prefixes."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from nst_batch.tasks.errors import OutputRootError, StorageError
from nst_batch.tasks.output.atomic import remove_stale_parts, write_atomic
from nst_batch.tasks.output.storage.protocol import Uris
from nst_batch.tasks.output.storage.uris import fixed_prefix, glob_regex

# Write errors that no other file under the same root would escape: the whole root is down.
_ROOT_WIDE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


class LocalStorage:
    shared = False

    def read_bytes(self, uri: str) -> bytes:
        return self._read(uri, None)

    def local_path(self, uri: str) -> str | None:
        return uri

    def entry_kind(self, uri: str, image_like: bool) -> str:
        return "file" if os.path.isfile(uri) else "folder" if os.path.isdir(uri) else "none"

    def remove_folder(self, uri: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(uri)

    def remove_stale_parts(self, root: str) -> Uris:
        return [str(p) for p in remove_stale_parts(root)]

    def read_head(self, uri: str, size: int) -> bytes:
        return self._read(uri, size)

    @staticmethod
    def _read(uri: str, size: int | None) -> bytes:
        try:
            if not stat.S_ISREG(os.stat(uri).st_mode) and not os.path.isdir(uri):
                # A FIFO or a device would block or never end: only regular files are inputs.
                raise StorageError(f"{uri}: not a regular file")
            if size is None:
                return Path(uri).read_bytes()
            with open(uri, "rb") as f:
                return f.read(size)
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri}: no such file") from None
        except IsADirectoryError:
            raise StorageError(f"{uri}: is a directory") from None
        except OSError as exc:
            raise StorageError(f"{uri}: cannot read: {exc.strerror or exc}") from None

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        try:
            write_atomic(uri, data)
        except OSError as exc:
            kind = OutputRootError if exc.errno in _ROOT_WIDE_ERRNOS else StorageError
            raise kind(f"{uri}: cannot write: {exc.strerror or exc}") from None

    def exists(self, uri: str) -> bool:
        return Path(uri).is_file()

    def size(self, uri: str) -> int | None:
        try:
            info = os.stat(uri)
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def list(self, prefix: str) -> Uris:
        if not os.path.isdir(prefix):
            return []
        return sorted(_walk_files(prefix))

    def delete(self, uri: str) -> None:
        Path(uri).unlink(missing_ok=True)

    def glob(self, pattern: str) -> Uris:
        """Regular files matching ``pattern``; ``**`` spans folders, never through a symlinked
        folder (a link back to a parent would loop for ever)."""
        base = fixed_prefix(pattern)
        if not os.path.isdir(base):
            return []
        regex = glob_regex(os.path.normpath(pattern))
        return sorted(p for p in _walk_files(base) if regex.match(os.path.normpath(p)))


def _walk_files(root: str) -> Uris:
    """Regular files under ``root`` (symlinks to files included, symlinked folders not followed)."""
    found = []
    for folder, _, files in os.walk(root, followlinks=False):
        found += [p for p in (os.path.join(folder, f) for f in files) if os.path.isfile(p)]
    return found
