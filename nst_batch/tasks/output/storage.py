"""Where bytes live: one small interface, a local and an S3 implementation, chosen by URI.

URIs are either ``s3://bucket/key`` or local paths. S3 settings come from the standard AWS
configuration (environment, ``~/.aws``), including ``AWS_ENDPOINT_URL``, so MinIO and other
S3-compatible stores work. boto3 is imported only when an S3 URI is used.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from nst_batch.tasks.errors import InputError, OutputRootError, StorageError
from nst_batch.tasks.output.atomic import remove_stale_parts, write_atomic

# Write errors that no other file under the same root would escape: the whole root is down.
_ROOT_WIDE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}
_ROOT_WIDE_S3 = {"NoSuchBucket", "AccessDenied", "AllAccessDisabled", "QuotaExceeded"}

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


# A URI scheme (two letters or more, so a Windows drive "C:/" is not one) followed by ":/".
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")
# S3's bucket naming rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _is_key(uri: str) -> bool:
    """Whether ``uri`` names an object by key (``s3://``, or a mounted ``mem://`` store), not a path."""
    return uri.startswith(("s3://", "mem://"))


def has_scheme(uri: str) -> bool:
    """Whether ``uri`` says a scheme (``s3://``, ``mem://``; also a malformed one): not a local path."""
    return _SCHEME.match(uri) is not None


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not usable, or None. A string with a scheme must be a well-formed
    ``s3://bucket/key``: ``s3:/b``, ``S3://b``, ``s3://`` or ``https://...`` are never taken for
    local paths."""
    if "\x00" in uri:
        return f"{uri!r} contains a NUL byte"
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return None
    if scheme.group(1) != "s3" or not uri.startswith("s3://"):
        hint = " (write s3://bucket/key, lowercase, two slashes)" if scheme.group(1).lower() == "s3" else "; only s3:// and local paths are supported"
        return f"{uri}: not a well-formed s3:// URI{hint}"
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        return f"{uri}: no bucket (write s3://bucket/key)"
    if not _BUCKET.match(bucket) or ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        return f"{uri}: {bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, '.' and '-')"
    if re.search(r"\?[A-Za-z]+=", key):
        return f"{uri}: query strings (?versionId=...) are not supported in s3:// URIs"
    return None


def check_uri(uri: str) -> str:
    """``uri`` itself, or an :class:`InputError` saying why it cannot be used."""
    problem = uri_problem(uri)
    if problem:
        raise InputError(problem)
    return uri


def join(root: str, *parts: str) -> str:
    if _is_key(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def split_s3(uri: str) -> tuple[str, str]:
    if not is_s3(uri):
        raise InputError(f"not an s3:// URI: {uri}")
    check_uri(uri)
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


_GLOB_CHARS = re.compile(r"[*?\[]")


def has_glob(uri: str) -> bool:
    return bool(_GLOB_CHARS.search(uri))


def parent(uri: str) -> str:
    """The folder (or key prefix) holding ``uri``: what a manifest's relative paths resolve against."""
    if _is_key(uri):
        return uri.rsplit("/", 1)[0]
    return str(Path(uri).resolve().parent)


def resolve(base: str, path: str) -> str:
    """``path`` relative to ``base`` (a folder or an S3 prefix); URIs and absolute paths as they are."""
    if is_s3(path) or (not is_s3(base) and Path(path).expanduser().is_absolute()):
        return str(Path(path).expanduser()) if not is_s3(path) else path
    if is_s3(base):
        bucket, key = split_s3(base + "/")
        return f"s3://{bucket}/{posixpath.normpath(posixpath.join(key, path))}"
    # realpath, not Path.resolve(): a symlink loop there raises RuntimeError (Python 3.11); here the
    # path stays as it is and reading it says "Too many levels of symbolic links", one line.
    return os.path.realpath(os.path.join(base, path))


def climbs_out(base: str, path: str) -> str | None:
    """Why ``path``, relative to an S3 prefix, is refused: a ``..`` above the bucket would become a
    key literally named ``../...`` inside it. Local paths normalise as the OS does."""
    if not is_s3(base) or is_s3(path):
        return None
    _, key = split_s3(base + "/")
    if posixpath.normpath(posixpath.join(key, path)).split("/")[0] == "..":
        return f"{path}: climbs above the bucket of {base}/ (a relative path on S3 stays inside its bucket)"
    return None


def basename(uri: str) -> str:
    return posixpath.basename(uri) if _is_key(uri) else os.path.basename(uri)


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
        base = _fixed_prefix(pattern)
        if not os.path.isdir(base):
            return []
        regex = _glob_regex(os.path.normpath(pattern))
        return sorted(p for p in _walk_files(base) if regex.match(os.path.normpath(p)))


def _walk_files(root: str) -> Uris:
    """Regular files under ``root`` (symlinks to files included, symlinked folders not followed)."""
    found = []
    for folder, _, files in os.walk(root, followlinks=False):
        found += [p for p in (os.path.join(folder, f) for f in files) if os.path.isfile(p)]
    return found


def _fixed_prefix(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if re.search(r"[*?\[]", part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or ("/" if pattern.startswith("/") else ".")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell pattern as a regex over whole paths: ``*`` and ``?`` stay within a folder, ``**``
    spans folders (``a/**/b`` also matches ``a/b``)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


class S3Storage:
    """boto3 over any S3-compatible endpoint; transient faults retried with backoff."""

    shared = True

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def local_path(self, uri: str) -> str | None:
        return None

    def entry_kind(self, uri: str, image_like: bool) -> str:
        """A key ending with an image extension is taken for an object without asking S3 (a
        manifest of 10,000 explicit pairs would cost 10,000 requests), unless it has pattern
        characters; anything else is a prefix."""
        if uri.endswith("/") or not image_like:
            return "folder"
        return "none" if has_glob(uri) and not self.exists(uri) else "file"

    def remove_folder(self, uri: str) -> None:
        return None  # a prefix is no object: it goes with its last key

    def remove_stale_parts(self, root: str) -> Uris:
        return []  # a put is atomic: S3 keeps no partial objects

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Throttling, 5xx answers and dropped connections are retried with exponential backoff
            # and jitter; AWS_MAX_ATTEMPTS / AWS_RETRY_MODE change it, as for any AWS tool.
            retries = {"total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "6")), "mode": os.environ.get("AWS_RETRY_MODE", "standard")}
            self._client = boto3.client("s3", config=Config(retries=retries, connect_timeout=10, read_timeout=60))
        return self._client

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{uri}: no such object") from None
            raise StorageError(f"{uri}: cannot read: {_describe(exc)}") from None

    def read_head(self, uri: str, size: int) -> bytes:
        bucket, key = split_s3(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{size - 1}")["Body"].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{uri}: no such object") from None
            if _code(exc) == "InvalidRange":  # an empty object
                return b""
            raise StorageError(f"{uri}: cannot read: {_describe(exc)}") from None

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        bucket, key = split_s3(uri)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            # A PUT is atomic in S3: the object appears complete or not at all.
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            kind = OutputRootError if _code(exc) in _ROOT_WIDE_S3 else StorageError
            raise kind(f"{uri}: cannot write: {_describe(exc)}") from None

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"{uri}: cannot check: {_describe(exc)}") from None

    def size(self, uri: str) -> int | None:
        bucket, key = split_s3(uri)
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"{uri}: cannot check: {_describe(exc)}") from None

    def list(self, prefix: str) -> Uris:
        bucket, key = split_s3(prefix)
        if key and not key.endswith("/"):
            key += "/"
        out: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                out += [f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", [])]
        except Exception as exc:
            raise StorageError(f"{prefix}: cannot list: {_describe(exc)}") from None
        return sorted(out)

    def delete(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise StorageError(f"{uri}: cannot delete: {_describe(exc)}") from None

    def glob(self, pattern: str) -> Uris:
        """``s3://bucket/photos/*.jpg``: list the fixed part, then match the rest."""
        bucket, key = split_s3(pattern)
        fixed = key.split("*")[0].split("?")[0].split("[")[0]
        folder = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
        candidates = self.list(f"s3://{bucket}/{folder}")
        return [u for u in candidates if fnmatch.fnmatchcase(split_s3(u)[1], key)]


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _describe(exc: Exception) -> str:
    code = _code(exc)
    return f"{code}: {exc}" if code else str(exc)


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
        regex = _glob_regex(pattern)
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
