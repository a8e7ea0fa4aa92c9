"""Atomic local writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path

PART_SUFFIX = ".part"
# .<final name>.<pid of the writer>-<its start time>.<random>.part (older writers: pid alone)
_PART_NAME = re.compile(r"^\..+\.(\d+)(?:-(\d+))?\.[^.]+\.part$")


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is anything but a regular file (a device, a FIFO, a
    socket, a folder, or a symlink to anything): a rename over it would replace it with a file.
    A symlink is refused even when it points to a regular file: the rename would replace the link
    itself and leave its target stale, which is neither writing through the link nor what its
    owner made it for."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is a file: the write itself fails with its own message
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.
    Refuses (``OSError``, EEXIST) to replace anything but a regular file (:func:`not_regular`)."""
    target = Path(path)
    kind = not_regular(target)
    if kind:
        raise OSError(errno.EEXIST, f"exists and is {kind}, not a regular file; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid and start time are in the name, so a later run can tell a crashed writer's
    # leftover from a file another live run is writing right now. The start time is what a reused
    # pid cannot fake (pid 1 in a container, or a number the kernel handed out again).
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}-{process_start_time(os.getpid())}.", suffix=PART_SUFFIX, dir=target.parent
    )
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
        if match and not process_alive(int(match.group(1)), int(match.group(2)) if match.group(2) else None):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether the writer ``pid`` (started at ``started``, if known) still runs."""
    if pid == os.getpid() and started in (None, process_start_time(pid)):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or process_start_time(pid) == started


def process_start_time(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22); 0 where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])
