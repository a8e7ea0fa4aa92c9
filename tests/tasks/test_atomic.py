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
