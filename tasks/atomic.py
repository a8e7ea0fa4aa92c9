"""Atomic local writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

PART_SUFFIX = ".part"
# .<final name>.<pid of the writer>.<random>.part
_PART_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.part$")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so a later run can tell a crashed writer's leftover from
    # a file another live run is writing right now.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=PART_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_parts(root: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left under ``root`` by writers that no longer run (killed with
    SIGKILL, or a machine that lost power); returns what was removed."""
    removed: list[Path] = []
    base = Path(root)
    if not base.is_dir():
        return removed
    for part in base.rglob(f"*{PART_SUFFIX}"):
        match = _PART_NAME.match(part.name)
        if match and not _alive(int(match.group(1))):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
