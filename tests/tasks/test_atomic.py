import os
import subprocess
import sys

from tasks.atomic import remove_stale_parts, write_atomic


def test_write_leaves_only_the_final_file(tmp_path):
    write_atomic(tmp_path / "a" / "x.png", b"123")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.png"]


def test_stale_parts_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
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
    from tasks.atomic import _start_time

    reused = tmp_path / f".x.png.1-{_start_time(1) + 12345}.abc.part"
    mine = tmp_path / f".y.png.{os.getpid()}-{_start_time(os.getpid())}.def.part"
    for p in (reused, mine):
        p.write_bytes(b"half")
    assert remove_stale_parts(tmp_path) == [reused]
    assert mine.exists()


def test_part_names_carry_the_writers_start_time(tmp_path, monkeypatch):
    from tasks import atomic

    seen = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real(a, b)))
    write_atomic(tmp_path / "z.png", b"1")
    assert seen[0].startswith(f".z.png.{os.getpid()}-{atomic._start_time(os.getpid())}.") and seen[0].endswith(".part")
