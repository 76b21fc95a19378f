"""Maildir++ quota: maildirsize format, recalculation rules, quota_full_tempfail."""

import os
import time

import pytest

from mailstack.store import quota
from mailstack.store.errors import QuotaExceeded
from mailstack.store.store import MailStore


def _read(mb):
    with open(os.path.join(mb.root, "maildirsize")) as handle:
        return handle.read()


@pytest.mark.parametrize("rule,expected", [
    ("", (None, None)),
    ("*:storage=1G", (1024 ** 3, None)),
    ("*:storage=100", (102400, None)),
    ("*:storage=10M:messages=5", (10 * 1024 ** 2, 5)),
    ("*:bytes=1000", (1000, None)),
], ids=["none", "1G", "kb", "both", "bytes"])
def test_parse_rule(rule, expected):
    """Dovecot quota rules give byte and message limits (storage without unit is kB)."""
    assert quota.parse_rule(rule) == expected


def test_maildirsize_written_and_updated(tmp_path):
    """Deliveries append '<size> 1' lines; expunges append negative ones; the header is the limit."""
    store = MailStore(hostname="mx")
    mb = store.mailbox("bob", str(tmp_path), quota_rule="*:bytes=1000:messages=10")
    first = mb.deliver(b"0123456789\n")
    assert _read(mb) == "1000S,10C\n0 0\n11 1\n"
    mb.deliver(b"abc\n")
    inbox = mb.folder()
    inbox.sync()
    inbox.expunge([first.uid])
    assert _read(mb).endswith("11 1\n4 1\n-11 -1\n")
    assert mb.quota.usage() == (4, 1, 1000, 10)


@pytest.mark.parametrize("tempfail,code,dsn", [(False, 552, "5.2.2"), (True, 452, "4.2.2")])
def test_quota_exceeded_on_delivery(tmp_path, tempfail, code, dsn):
    """A delivery over quota fails (permanent, or temporary with quota_full_tempfail) and leaves nothing."""
    store = MailStore(hostname="mx")
    store.quota_tempfail = tempfail
    mb = store.mailbox("bob", str(tmp_path), quota_rule="*:bytes=20")
    mb.deliver(b"x" * 10 + b"\n")
    with pytest.raises(QuotaExceeded) as info:
        mb.deliver(b"y" * 10 + b"\n")
    assert info.value.temporary is tempfail and (info.value.code, info.value.dsn) == (code, dsn)
    assert "Mailbox full" in info.value.text
    assert os.listdir(os.path.join(mb.root, "tmp")) == []
    assert len(os.listdir(os.path.join(mb.root, "new"))) == 1


def test_stale_usage_is_recalculated(tmp_path):
    """Over quota per an old maildirsize (>15 min) triggers a recount that lets the mail in."""
    store = MailStore(hostname="mx")
    mb = store.mailbox("bob", str(tmp_path), quota_rule="*:messages=2")
    mb.deliver(b"a\n")
    with open(os.path.join(mb.root, "maildirsize"), "a") as handle:
        handle.write("100 5\n")  # drift, e.g. from a crashed writer
    old = time.time() - 3600
    os.utime(os.path.join(mb.root, "maildirsize"), (old, old))
    mb.deliver(b"b\n")
    assert mb.quota.usage()[:2] == (4, 2)


def test_big_maildirsize_is_recalculated(tmp_path):
    """A maildirsize grown past 5120 bytes is rewritten as one summary line."""
    store = MailStore(hostname="mx", fsync=False)
    mb = store.mailbox("bob", str(tmp_path), quota_rule="*:storage=1G")
    for _ in range(600):
        mb.deliver(b"x\n")
    assert os.path.getsize(os.path.join(mb.root, "maildirsize")) < 5120
    assert mb.quota.usage()[:2] == (1200, 600)


def test_definition_from_file_when_not_configured(tmp_path):
    """Without a configured rule, a maildirsize written by another tool (Courier) sets the limit."""
    store = MailStore(hostname="mx")
    mb = store.mailbox("bob", str(tmp_path)).ensure()
    with open(os.path.join(mb.root, "maildirsize"), "w") as handle:
        handle.write("5S\n0 0\n")
    with pytest.raises(QuotaExceeded):
        mb.deliver(b"too big\n")
    assert store.mailbox("carol", str(tmp_path / "c")).deliver(b"no quota here\n").uid == 1
