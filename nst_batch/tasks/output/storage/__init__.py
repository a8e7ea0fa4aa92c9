"""Where bytes live: one small interface (:class:`Storage`, in protocol.py) with three
implementations (local disk, S3, memory), one router that picks one by URI (routing.py), and the URI
helpers they share (uris.py). Everything else imports from here.
"""

from nst_batch.tasks.errors import StorageError
from nst_batch.tasks.output.storage.local import LocalStorage
from nst_batch.tasks.output.storage.memory import MemoryStorage
from nst_batch.tasks.output.storage.protocol import Storage, Uris
from nst_batch.tasks.output.storage.routing import mounted, reset_s3_client, storage_for
from nst_batch.tasks.output.storage.s3 import S3Storage
from nst_batch.tasks.output.storage.uris import (
    basename,
    check_uri,
    climbs_out,
    has_glob,
    has_scheme,
    is_s3,
    join,
    parent,
    resolve,
    split_s3,
    uri_problem,
)

__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "Uris",
    "basename",
    "check_uri",
    "climbs_out",
    "has_glob",
    "has_scheme",
    "is_s3",
    "join",
    "mounted",
    "parent",
    "reset_s3_client",
    "resolve",
    "split_s3",
    "storage_for",
    "uri_problem",
]
