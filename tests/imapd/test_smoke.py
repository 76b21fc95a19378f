"""First light: log in, select, append and fetch over a real socket."""

import pytest_twisted

from tests.imapd.conftest import in_thread


@pytest_twisted.ensureDeferred
async def test_login_select_append_fetch(imap_server):
    """A client logs in, appends a message to INBOX and fetches it back."""
    def session():
        client = imap_server.client()
        typ, data = client.append("INBOX", r"(\Seen)", None, b"Subject: hi\r\n\r\nhello\r\n")
        assert typ == "OK", data
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = client.fetch("1", "(FLAGS BODY[])")
        client.logout()
        return typ, data

    typ, data = await in_thread(session)
    assert typ == "OK"
    assert b"\\Seen" in data[0][0]
    assert data[0][1] == b"Subject: hi\r\n\r\nhello\r\n"
