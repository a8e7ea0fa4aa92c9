import os
import subprocess
import sys

from nst_batch.tasks.output.atomic import remove_stale_parts, write_atomic


def test_write_leaves_only_the_final_file(tmp_path):
    write_atomic(tmp_path / "a" / "x.png", b"123")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.png"]


def test_stale_parts_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / "sub" / f".x.png.{dead}.abc123.part"
    live = tmp_path / f".y.png.{os.getpid()}.def456.part"
    other = tmp_path / "notes.part"  # not ours: left alone
    stale.parent.mkdir()
    for p in (stale, live, other):
        p.write_bytes(b"half")
    assert remove_stale_parts(tmp_path) == [stale]
    assert live.exists() and other.exists() and not stale.exists()


def test_a_reused_pid_does_not_keep_a_stale_part_alive(tmp_path):
    """pid 1 (or any live pid) with another start time than the writer had: the writer is gone."""
    from nst_batch.tasks.output.atomic import process_start_time

    reused = tmp_path / f".x.png.1-{process_start_time(1) + 12345}.abc.part"
    mine = tmp_path / f".y.png.{os.getpid()}-{process_start_time(os.getpid())}.def.part"
    for p in (reused, mine):
        p.write_bytes(b"half")
    assert remove_stale_parts(tmp_path) == [reused]
    assert mine.exists()


def test_part_names_carry_the_writers_start_time(tmp_path, monkeypatch):
    from nst_batch.tasks.output import atomic

    seen = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real(a, b)))
    write_atomic(tmp_path / "z.png", b"1")
    assert seen[0].startswith(f".z.png.{os.getpid()}-{atomic.process_start_time(os.getpid())}.") and seen[0].endswith(
        ".part"
    )


def _specials(tmp_path):
    """A FIFO, a symlink to a character device, a symlink to a regular file, a folder, a socket."""
    import socket

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    to_device = tmp_path / "full"
    to_device.symlink_to("/dev/full")
    target = tmp_path / "real.json"
    target.write_text("{}")
    to_file = tmp_path / "link.json"
    to_file.symlink_to(target)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    return {"a FIFO": fifo, "a symbolic link": to_device, "a folder": folder, "a socket": sock_path}, to_file, sock


def test_write_never_replaces_a_special_file_or_a_symlink(tmp_path):
    import stat

    import pytest

    specials, to_file, sock = _specials(tmp_path)
    try:
        for kind, path in [*specials.items(), ("a symbolic link", to_file)]:
            with pytest.raises(OSError, match=f"exists and is {kind}, not a regular file"):
                write_atomic(path, b"x")
        assert stat.S_ISFIFO(os.lstat(specials["a FIFO"]).st_mode)
        assert os.path.islink(specials["a symbolic link"]) and stat.S_ISCHR(os.stat("/dev/full").st_mode)
        assert (
            os.path.islink(to_file) and (tmp_path / "real.json").read_text() == "{}"
        )  # the link and its target unchanged
        write_atomic(tmp_path / "real.json", b"[]")  # a regular file is replaced as before
        assert (tmp_path / "real.json").read_bytes() == b"[]"
    finally:
        sock.close()


def test_storage_says_which_file_it_refused(tmp_path):
    import pytest

    from nst_batch.tasks.errors import StorageError
    from nst_batch.tasks.output.storage import LocalStorage

    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(StorageError, match=r"x.png: cannot write: exists and is a FIFO"):
        LocalStorage().write_bytes(str(tmp_path / "x.png"), b"data")
