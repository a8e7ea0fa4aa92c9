"""The one interface every read and write of the tasks ring goes through (:class:`Storage`)."""

from __future__ import annotations

from typing import Protocol

# URIs, sorted. A name of its own because the storages' method ``list`` shadows the builtin in
# their class bodies.
Uris = list[str]


class Storage(Protocol):
    """What the rest of the code asks of a place where bytes live (see :func:`storage_for`)."""

    def read_bytes(self, uri: str) -> bytes:
        """The whole object; ``FileNotFoundError`` when it does not exist, else :class:`StorageError`."""

    def read_head(self, uri: str, size: int) -> bytes:
        """The first ``size`` bytes (fewer for a shorter object); errors as :meth:`read_bytes`."""

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        """Write atomically: readers see the old object, or the complete new one."""

    def exists(self, uri: str) -> bool: ...

    def size(self, uri: str) -> int | None:
        """The object's size in bytes, or None when it does not exist (one stat or HEAD, as exists)."""

    def list(self, prefix: str) -> Uris:
        """Every object under ``prefix`` (a folder or key prefix), as URIs, sorted."""

    def glob(self, pattern: str) -> Uris:
        """Objects matching a shell pattern (``*``, ``?``, ``[..]``; ``**`` spans folders), sorted."""

    def delete(self, uri: str) -> None: ...

    # Every machine of a cluster sees the same objects here (S3), or only its own (a local disk).
    shared: bool

    def local_path(self, uri: str) -> str | None:
        """A path the operating system opens (to read an image's header in place, to look for
        special files), or None where objects are not files."""

    def entry_kind(self, uri: str, image_like: bool) -> str:
        """What a manifest's entry names: ``file``, ``folder`` (a folder or a key prefix, to list)
        or ``none`` (a pattern, or nothing yet). ``image_like``: it ends with an image extension."""

    def remove_folder(self, uri: str) -> None:
        """Remove an empty folder, where there are folders; nothing otherwise."""

    def remove_stale_parts(self, root: str) -> Uris:
        """Remove the partial writes that writers no longer running left under ``root``."""
