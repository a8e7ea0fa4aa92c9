"""Where a run will write, checked before any work (nst_batch.tasks.output.checks): an output that
is an input, a folder or a special file where a file goes, a folder that takes no file."""

from __future__ import annotations

import os

import pytest

from nst_batch.tasks.errors import OutputError
from nst_batch.tasks.output.checks import (
    check_not_inputs,
    check_writable_file,
    check_writable_root,
    same_file,
)
from nst_batch.tasks.output.storage.memory import MemoryStorage
from nst_batch.tasks.output.storage.routing import mounted


def test_an_output_that_is_an_input_by_another_name_is_refused(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(photo)
    os.link(photo, tmp_path / "hard.png")
    assert same_file(tmp_path / "link.png", photo) and same_file(tmp_path / "hard.png", photo)
    assert same_file(tmp_path / "sub" / ".." / "photo.png", photo)
    with pytest.raises(OutputError, match="output .*link.png is the content .*photo.png"):
        check_not_inputs({"output": tmp_path / "link.png"}, {"content": photo})
    check_not_inputs({"output": tmp_path / "new.png"}, {"content": photo})
    assert not same_file("s3://b/a.png", "s3://b/c.png") and same_file("s3://b/a.png", "s3://b/a.png")


def test_a_folder_a_fifo_or_a_file_where_a_folder_goes_is_refused(tmp_path):
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_writable_file(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="refusing to replace it"):
        check_writable_file(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable_file(tmp_path / "file" / "out.png")
    check_writable_file(tmp_path / "new" / "deeper" / "out.png")  # folders that do not exist yet are made later
    assert not (tmp_path / "new").exists()


def test_a_folder_that_takes_no_new_file_is_refused_with_the_systems_reason():
    # /proc takes no new file, even from root (a read-only folder would not stop root)
    with pytest.raises(OutputError, match="output /proc/out.png: cannot write in /proc: "):
        check_writable_file("/proc/out.png")


def test_an_object_root_is_proven_by_a_probe_that_is_removed_again():
    store = MemoryStorage()
    with mounted("mem://checks", store):
        check_writable_root("mem://checks/out")
    assert store.objects == {}
