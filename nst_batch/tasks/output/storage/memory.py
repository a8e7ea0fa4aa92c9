"""In memory, under ``mem://`` URIs mounted for a block (tests, and tools that want no disk)."""

from __future__ import annotations

from nst_batch.tasks.output.storage.protocol import Uris
from nst_batch.tasks.output.storage.uris import glob_regex, has_glob


class MemoryStorage:
    """Objects in a dict, under ``mem://`` URIs: a storage for task tests that need neither a disk
    nor a server (:func:`mounted` routes its URIs here). Behaves as an object store: every put is
    atomic, there are no folders, and every machine would see the same objects."""

    shared = True

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def read_bytes(self, uri: str) -> bytes:
        if uri not in self.objects:
            raise FileNotFoundError(f"{uri}: no such object")
        return self.objects[uri]

    def read_head(self, uri: str, size: int) -> bytes:
        return self.read_bytes(uri)[:size]

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        self.objects[uri] = bytes(data)

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def size(self, uri: str) -> int | None:
        return len(self.objects[uri]) if uri in self.objects else None

    def list(self, prefix: str) -> Uris:
        under = prefix.rstrip("/") + "/"
        return sorted(u for u in self.objects if u.startswith(under))

    def glob(self, pattern: str) -> Uris:
        regex = glob_regex(pattern)
        return sorted(u for u in self.objects if regex.match(u))

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)

    def local_path(self, uri: str) -> str | None:
        return None

    def entry_kind(self, uri: str, image_like: bool) -> str:
        if uri in self.objects:
            return "file"
        return "none" if has_glob(uri) else "folder"

    def remove_folder(self, uri: str) -> None:
        return None

    def remove_stale_parts(self, root: str) -> Uris:
        return []
