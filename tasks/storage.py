"""Where bytes live: one small interface, a local and an S3 implementation, chosen by URI.

URIs are either ``s3://bucket/key`` or local paths. S3 settings come from the standard AWS
configuration (environment, ``~/.aws``), including ``AWS_ENDPOINT_URL``, so MinIO and other
S3-compatible stores work. boto3 is imported only when an S3 URI is used.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Any, Protocol

from tasks.atomic import write_atomic
from tasks.errors import StorageError


class Storage(Protocol):
    def read_bytes(self, uri: str) -> bytes: ...

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        """Write atomically: readers see the old object, or the complete new one."""

    def exists(self, uri: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Every object under ``prefix`` (a folder or key prefix), as URIs, sorted."""

    def delete(self, uri: str) -> None: ...


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(root: str, *parts: str) -> str:
    if is_s3(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def split_s3(uri: str) -> tuple[str, str]:
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri}")
    return bucket, key


class LocalStorage:
    def read_bytes(self, uri: str) -> bytes:
        try:
            return Path(uri).read_bytes()
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
            raise StorageError(f"{uri}: cannot write: {exc.strerror or exc}") from None

    def exists(self, uri: str) -> bool:
        return Path(uri).is_file()

    def list(self, prefix: str) -> list[str]:
        root = Path(prefix)
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file())

    def delete(self, uri: str) -> None:
        Path(uri).unlink(missing_ok=True)

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


class S3Storage:
    """boto3 over any S3-compatible endpoint; transient faults retried with backoff."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

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

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        bucket, key = split_s3(uri)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            # A PUT is atomic in S3: the object appears complete or not at all.
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            raise StorageError(f"{uri}: cannot write: {_describe(exc)}") from None

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"{uri}: cannot check: {_describe(exc)}") from None

    def list(self, prefix: str) -> list[str]:
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

    def glob(self, pattern: str) -> list[str]:
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


_LOCAL = LocalStorage()
_S3: S3Storage | None = None


def storage_for(uri: str) -> LocalStorage | S3Storage:
    """The storage that holds ``uri``; the S3 client is created once per process."""
    global _S3
    if is_s3(uri):
        if _S3 is None:
            _S3 = S3Storage()
        return _S3
    return _LOCAL


def reset_s3_client() -> None:
    """Forget the cached S3 client (after the AWS settings changed, e.g. in tests)."""
    global _S3
    _S3 = None
