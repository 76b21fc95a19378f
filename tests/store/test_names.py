"""Modified UTF-7 folder names and Maildir++ directory names."""

import pytest

from mailstack.store import mutf7
from mailstack.store.errors import BadFolderName
from mailstack.store.mailbox import folder_dirname, folder_name

CASES = [
    ("INBOX", "INBOX"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("A&B", "A&-B"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Ω", "&A6k-"),
    ("😀 x", "&2D3eAA- x"),
]


@pytest.mark.parametrize("name,encoded", CASES, ids=[c[1] for c in CASES])
def test_mutf7_round_trip(name, encoded):
    """Names encode to RFC 3501 §5.1.3 modified UTF-7 and decode back."""
    assert mutf7.encode(name) == encoded
    assert mutf7.decode(encoded) == name


@pytest.mark.parametrize("bad", ["&", "a&Zm9v", "&!!-"])
def test_mutf7_rejects_garbage(bad):
    """Malformed modified UTF-7 raises ValueError."""
    with pytest.raises(ValueError):
        mutf7.decode(bad)


def test_folder_dirnames():
    """Folders map to Maildir++ dot directories and back; INBOX is the root."""
    assert folder_dirname("inbox") == ""
    assert folder_dirname("Archive.2024") == ".Archive.2024"
    assert folder_dirname("Entwürfe.Sub") == ".Entw&APw-rfe.Sub"
    assert folder_name(".Entw&APw-rfe.Sub") == "Entwürfe.Sub"


@pytest.mark.parametrize("bad", ["", "a..b", ".x", "x.", "a/b", "INBOX.x"])
def test_bad_folder_names(bad):
    """Empty parts, slashes and sub-folders of INBOX are refused."""
    with pytest.raises(BadFolderName):
        folder_dirname(bad)
