"""replace_file: all-or-nothing file replacement that keeps the file's mode."""

import os

import pytest

from mailstack.util.atomic import replace_file


def test_new_file_gets_default_mode_and_content(tmp_path):
    """A new file is written whole with the default mode, and no temporary file is left."""
    path = tmp_path / "main.cf"
    replace_file(str(path), "a = b\n", default_mode=0o640)
    assert path.read_text() == "a = b\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["main.cf"]


def test_existing_mode_is_kept(tmp_path):
    """Replacing keeps the permissions the admin gave the file."""
    path = tmp_path / "passwd"
    path.write_text("old\n")
    os.chmod(path, 0o600)
    replace_file(str(path), b"new\n")
    assert path.read_bytes() == b"new\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    """When the write fails (data of the wrong type here), the old file stays and nothing is left behind."""
    path = tmp_path / "virtual"
    path.write_text("kept\n")
    with pytest.raises(TypeError):
        replace_file(str(path), 12345)
    assert path.read_text() == "kept\n"
    assert os.listdir(tmp_path) == ["virtual"]
