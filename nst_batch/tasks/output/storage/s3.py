"""S3 and S3-compatible stores (MinIO, moto), configured the standard AWS way (environment,
``~/.aws``, ``AWS_ENDPOINT_URL``). boto3 is imported only when an S3 URI is used."""

from __future__ import annotations

import fnmatch
import os
from typing import Any

from nst_batch.tasks.errors import OutputRootError, StorageError
from nst_batch.tasks.output.storage.protocol import Uris
from nst_batch.tasks.output.storage.uris import has_glob, split_s3

# Write errors that no other key in the same bucket would escape: the whole root is down.
_ROOT_WIDE_S3 = {"NoSuchBucket", "AccessDenied", "AllAccessDisabled", "QuotaExceeded"}


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
            retries = {
                "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "6")),
                "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            }
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
