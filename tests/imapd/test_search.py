"""SEARCH and UID SEARCH: flags, headers, bodies, text, dates, sizes, sets, NOT/OR, charsets, errors."""

from tests.imapd.conftest import connect, threaded

MESSAGES = [
    (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Quarterly report\r\n"
     b"Date: Mon, 01 Mar 2021 09:00:00 +0000\r\nX-Tag: blue\r\n\r\nNumbers are up.\r\n", "(\\Seen)",
     '"01-Mar-2021 09:00:00 +0000"'),
    (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nCc: carol@example.test\r\n"
     b"Subject: =?utf-8?q?Caf=C3=A9?= lunch\r\nDate: Wed, 10 Mar 2021 12:00:00 +0000\r\n"
     b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
     b"Meet at the caf=C3=A9 at noon.\r\n", "(\\Flagged $Work)", '"10-Mar-2021 12:00:00 +0000"'),
    (b"From: Carol <carol@example.test>\r\nTo: alice@example.test\r\nSubject: Re: Quarterly report\r\n"
     b"Date: Sat, 20 Mar 2021 18:00:00 +0000\r\n\r\n" + b"x" * 2000 + b"\r\n", "(\\Deleted \\Answered)",
     '"20-Mar-2021 18:00:00 +0000"'),
]


def _setup(conn):
    for data, flags, date in MESSAGES:
        conn.append("ok", "INBOX", data, flags="%s %s" % (flags, date))
    conn.transact("ok", "SELECT INBOX")


def _search(conn, query, uid=False):
    line = conn.transact("ok", ("UID SEARCH " if uid else "SEARCH ") + query).find(b"SEARCH")[0]
    return [int(n) for n in line.split()[1:]]


@threaded
def test_search_keys(imap_server):
    """Every RFC 3501 search key selects the expected messages."""
    conn = connect(imap_server)
    _setup(conn)
    cases = {
        "ALL": [1, 2, 3], "SEEN": [1], "UNSEEN": [2, 3], "FLAGGED": [2], "UNFLAGGED": [1, 3],
        "DELETED": [3], "UNDELETED": [1, 2], "ANSWERED": [3], "UNANSWERED": [1, 2], "DRAFT": [],
        "UNDRAFT": [1, 2, 3], "KEYWORD $Work": [2], "UNKEYWORD $Work": [1, 3], "NEW": [2, 3], "RECENT": [1, 2, 3],
        "OLD": [], "FROM alice": [1], "TO alice": [2, 3], "CC carol": [2], "BCC nobody": [],
        "SUBJECT quarterly": [1, 3], 'SUBJECT "café"': [2], "HEADER X-Tag blue": [1], 'HEADER X-Tag ""': [1],
        "BODY numbers": [1], "BODY \"café\"": [2], "TEXT carol": [2, 3], "TEXT noon": [2],
        "LARGER 1000": [3], "SMALLER 1000": [1, 2],
        "BEFORE 10-Mar-2021": [1], "ON 10-Mar-2021": [2], "SINCE 10-Mar-2021": [2, 3],
        "SENTBEFORE 10-Mar-2021": [1], "SENTON 20-Mar-2021": [3], "SENTSINCE 02-Mar-2021": [2, 3],
        "NOT SEEN": [2, 3], "OR SEEN FLAGGED": [1, 2], "(SEEN) FROM alice": [1], "2:*": [2, 3], "1,3": [1, 3],
        "UID 2": [2], "NOT (OR SEEN DELETED)": [2], "CHARSET UTF-8 SUBJECT \"café\"": [2],
    }
    for query, expected in cases.items():
        assert _search(conn, query) == expected, query
    assert _search(conn, "FLAGGED", uid=True) == [2]
    conn.close()


@threaded
def test_search_errors(imap_server):
    """Unknown keys and syntax errors are BAD; an unknown charset is NO [BADCHARSET]."""
    conn = connect(imap_server)
    _setup(conn)
    conn.transact("bad", "SEARCH FROBNICATE")
    conn.transact("bad", "SEARCH")
    conn.transact("bad", "SEARCH BEFORE 31-Foo-2021")
    conn.transact("bad", "SEARCH (SEEN")
    assert conn.transact("no", "SEARCH CHARSET KOI8-R ALL").text.startswith(b"[BADCHARSET (UTF-8 US-ASCII)]")
    conn.close()


@threaded
def test_search_with_literal(imap_server):
    """Search strings may be sent as literals (what clients do for non-ASCII text)."""
    conn = connect(imap_server)
    _setup(conn)
    word = "café".encode()
    tag = conn.command(b"SEARCH CHARSET UTF-8 SUBJECT {%d}" % len(word))
    assert conn.read_line().startswith(b"+")
    conn.send(word + b"\r\n")
    assert conn.finish(tag).untagged == [b"SEARCH 2"]
    conn.close()


@threaded
def test_header_search_quick_test_keeps_matches(imap_server):
    """Header keys find folded, RFC 2047-encoded, 8-bit and late-in-a-long-header matches, and nothing else."""
    conn = connect(imap_server)
    long_header = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 70) for i in range(400))  # ~32 KB
    for data in (
            b"Subject: weekly\r\n\tstatus Meeting\r\n\r\nfolded\r\n",
            b"Subject: =?utf-8?b?V2Vla2x5IHN0YXR1cyBtZWV0aW5n?=\r\n\r\nencoded\r\n",
            "Subject: Caf\u00e9 weekly status meeting\r\n\r\n8-bit\r\n".encode("utf-8"),
            long_header + b"Subject: weekly status meeting\r\n\r\nlong\r\n",
            b"Subject: monthly status\r\nX-Note: weekly status meeting\r\n\r\nother field\r\n"):
        conn.append("ok", "INBOX", data)
    conn.transact("ok", "SELECT INBOX")
    assert _search(conn, 'SUBJECT "weekly status meeting"') == [1, 2, 3, 4]
    assert _search(conn, 'HEADER X-Note "WEEKLY STATUS"') == [5]
    assert _search(conn, 'CHARSET UTF-8 SUBJECT "caf\u00e9"') == [3]
    assert _search(conn, 'NOT SUBJECT "weekly"') == [5]
    assert _search(conn, 'OR SUBJECT "monthly" SUBJECT "encoded-nothing"') == [5]
    conn.close()


@threaded
def test_header_search_fills_and_uses_the_header_cache(imap_server):
    """A header SEARCH keeps header blocks in the service's header cache and answers the same from it."""
    conn = connect(imap_server)
    _setup(conn)
    cache = imap_server.factories["imap"].header_cache
    assert len(cache) == 0
    assert _search(conn, 'SUBJECT "quarterly"') == [1, 3]
    assert len(cache) == 3
    assert _search(conn, 'SUBJECT "quarterly"') == [1, 3]
    assert _search(conn, 'FROM "bob"') == [2]
    conn.close()


@threaded
def test_structure_fetch_fills_the_header_cache(imap_server):
    """A cold ENVELOPE fetch leaves header blocks for later searches; the structures stay in their own cache."""
    conn = connect(imap_server)
    _setup(conn)
    conn.transact("ok", "FETCH 1:* (ENVELOPE)")
    factory = imap_server.factories["imap"]
    assert len(factory.header_cache) == 3 and len(factory.structure_cache) == 3
    assert _search(conn, 'SUBJECT "caf\u00e9"') == [2]
    conn.close()
