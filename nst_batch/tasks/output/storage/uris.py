"""URIs: ``s3://bucket/key`` or local paths. Checking, joining, splitting and resolving them, and
shell patterns over them; no I/O here."""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from nst_batch.tasks.errors import InputError

# A URI scheme (two letters or more, so a Windows drive "C:/" is not one) followed by ":/".
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")
# S3's bucket naming rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def is_key(uri: str) -> bool:
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
        hint = (
            " (write s3://bucket/key, lowercase, two slashes)"
            if scheme.group(1).lower() == "s3"
            else "; only s3:// and local paths are supported"
        )
        return f"{uri}: not a well-formed s3:// URI{hint}"
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        return f"{uri}: no bucket (write s3://bucket/key)"
    if not _BUCKET.match(bucket) or ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        return (
            f"{uri}: {bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, '.' and '-')"
        )
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
    if is_key(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def split_s3(uri: str) -> tuple[str, str]:
    if not is_s3(uri):
        raise InputError(f"not an s3:// URI: {uri}")
    check_uri(uri)
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


_GLOB_CHARS = re.compile(r"[*?\[]")


def has_glob(uri: str) -> bool:
    return bool(_GLOB_CHARS.search(uri))


def parent(uri: str) -> str:
    """The folder (or key prefix) holding ``uri``: what a manifest's relative paths resolve against."""
    if is_key(uri):
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
    return posixpath.basename(uri) if is_key(uri) else os.path.basename(uri)


def fixed_prefix(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if re.search(r"[*?\[]", part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or ("/" if pattern.startswith("/") else ".")


def glob_regex(pattern: str) -> re.Pattern[str]:
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
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")
