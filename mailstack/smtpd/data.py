# -*- test-case-name: tests.smtpd.test_smuggling -*-
"""DATA content: the end-of-data search and dot-unstuffing, streamed.

:class:`DotReader` receives the bytes that follow ``354`` in whatever
pieces TCP delivers and hands message content to a sink as soon as whole
lines are known, so a message is never held in memory.

Only ``<CR><LF>.<CR><LF>`` ends a message (RFC 5321 §4.1.1.4).  A bare
``<LF>`` or ``<CR>`` never does, whatever follows it: this is what keeps
the server immune to SMTP smuggling (RFC 5321 §2.3.8; the 2023
"SMTP smuggling" advisories, Postfix ``smtpd_forbid_bare_newline``).
Dot-unstuffing (RFC 5321 §4.5.2) removes the first dot of every line that
starts with one (``..x`` becomes ``.x``, ``.x`` becomes ``x``).

Design note: the reader keeps the unconsumed input in ``_buf``, which (in
the normal state) starts with the ``<CR><LF>`` that ended the previous line
and has not been passed on yet; at the start of a message that CRLF is a
virtual one.  Searching ``_buf + chunk`` with ``bytes.find`` therefore finds
an end-of-data sequence wherever chunk boundaries fall, and
``replace(b"\\r\\n.", b"\\r\\n")`` unstuffs every complete line in one C-level
pass (the end marker has been excluded before, so every remaining
line-initial dot is a stuffing dot to delete).  The CRLF before the end marker belongs to the message; the marker's
``.<CR><LF>`` does not.  A line longer than :data:`LONG_LINE` without CRLF is
passed on in pieces ("mid-line" state) so that memory stays bounded; the
last byte is held back when it is a CR, which could begin the end marker.
"""

LONG_LINE = 64 * 1024


class DotReader:
    """Incremental RFC 5321 DATA reader.

    Args:
        sink: called with each piece of unstuffed content (bytes, CRLF line ends as sent).
    """

    def __init__(self, sink):
        self._sink = sink
        self._buf = b"\r\n"
        self._first = True
        self._midline = False
        self.size = 0

    def _emit(self, content):
        if self._first:
            content = content[2:]
            self._first = False
        if content:
            self.size += len(content)
            self._sink(content)

    def feed(self, chunk):
        """Consume ``chunk``.

        Returns:
            ``None`` while the message goes on, or the bytes that followed the
            end-of-data line (pipelined commands, possibly empty) once it ended.
        """
        data = self._buf + chunk
        while True:
            if self._midline:
                i = data.find(b"\r\n")
                if i < 0:
                    keep = 1 if data.endswith(b"\r") else 0
                    if len(data) - keep:
                        self.size += len(data) - keep
                        self._sink(data[:len(data) - keep])
                    self._buf = data[len(data) - keep:]
                    return None
                if i:
                    self.size += i
                    self._sink(data[:i])
                data = data[i:]
                self._midline = False
            end = data.find(b"\r\n.\r\n")
            if end >= 0:
                self._emit(data[:end + 2].replace(b"\r\n.", b"\r\n"))
                self._buf = b""
                return data[end + 5:]
            last = data.rfind(b"\r\n")
            if last > 0:
                self._emit(data[:last].replace(b"\r\n.", b"\r\n"))
                data = data[last:]
            if len(data) > LONG_LINE:
                keep = 1 if data.endswith(b"\r") else 0
                self._emit(data[:len(data) - keep].replace(b"\r\n.", b"\r\n", 1))
                self._first = False
                self._midline = True
                data = data[len(data) - keep:]
                continue
            self._buf = data
            return None
