"""The one router: which storage holds a URI (local disk, S3, or a mounted one)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from nst_batch.tasks.output.storage.local import LocalStorage
from nst_batch.tasks.output.storage.protocol import Storage
from nst_batch.tasks.output.storage.s3 import S3Storage
from nst_batch.tasks.output.storage.uris import is_s3

_LOCAL = LocalStorage()
_S3: S3Storage | None = None
_MOUNTED: dict[str, Storage] = {}


@contextlib.contextmanager
def mounted(prefix: str, storage: Storage) -> Iterator[Storage]:
    """Route the URIs under ``prefix`` (``mem://name``) to ``storage`` while the block runs."""
    _MOUNTED[prefix] = storage
    try:
        yield storage
    finally:
        _MOUNTED.pop(prefix, None)


def storage_for(uri: str) -> Storage:
    """The one router: the storage that holds ``uri``. The S3 client is created once per process."""
    global _S3
    for prefix, storage in _MOUNTED.items():
        if uri.startswith(prefix):
            return storage
    if is_s3(uri):
        if _S3 is None:
            _S3 = S3Storage()
        return _S3
    return _LOCAL


def reset_s3_client() -> None:
    """Forget the cached S3 client (after the AWS settings changed, e.g. in tests)."""
    global _S3
    _S3 = None
