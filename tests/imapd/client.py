"""A tiny raw IMAP client for transcript tests: ``conn.transact("ok", "UNSELECT")``.

It speaks plain sockets (optionally TLS), sends exactly what the test says,
and returns the untagged responses (literals inlined) with the tagged line,
so tests can assert the server's precise wire behaviour.  It blocks: run it
in a thread (``tests.imapd.conftest.threaded``).
"""

import base64
import itertools
import re
import socket
import ssl

_LITERAL = re.compile(rb"\{(\d+)\}$")


class Result:
    """The outcome of one command: ``untagged`` lines (bytes, without ``* ``) and the ``tagged`` line."""

    def __init__(self, untagged, status, text):
        self.untagged = untagged
        self.status = status
        self.text = text

    def find(self, prefix):
        """Return the untagged lines starting with ``prefix`` (bytes)."""
        return [line for line in self.untagged if line.upper().startswith(prefix.upper())]

    def __repr__(self):
        return "<Result %s %r untagged=%r>" % (self.status, self.text, self.untagged)


class Conn:
    """A raw IMAP connection."""

    def __init__(self, port, host="127.0.0.1", tls_context=None, server_hostname="localhost", timeout=10):
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.file = sock.makefile("rb")
        self.tags = ("T%d" % n for n in itertools.count(1))
        self.greeting = self.read_line()

    def read_line(self):
        """Read one response line with its literals inlined; b"" at EOF."""
        line = self.file.readline()
        if not line:
            return b""
        line = line.rstrip(b"\r\n")
        while True:
            match = _LITERAL.search(line)
            if not match:
                return line
            data = self.file.read(int(match.group(1)))
            line = line + b"\r\n" + data + self.file.readline().rstrip(b"\r\n")

    def send(self, data):
        self.sock.sendall(data)

    def command(self, text, literal_waits=True):
        """Send a command (str or bytes) with a fresh tag; return the tag."""
        tag = next(self.tags).encode()
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.send(tag + b" " + text + b"\r\n")
        return tag

    def finish(self, tag):
        """Read responses up to the tagged one; return a :class:`Result`."""
        untagged = []
        while True:
            line = self.read_line()
            if not line:
                raise ConnectionError("connection closed; got %r" % untagged)
            if line.startswith(tag + b" "):
                status, _, text = line[len(tag) + 1:].partition(b" ")
                return Result(untagged, status.decode().lower(), text)
            if line.startswith(b"* "):
                untagged.append(line[2:])
            else:
                untagged.append(line)

    def transact(self, expect, text):
        """Run one command and assert its tagged status (``"ok"``, ``"no"`` or ``"bad"``)."""
        result = self.finish(self.command(text))
        assert result.status == expect, "%s: expected %s, got %r" % (text, expect, result)
        return result

    def append(self, expect, mailbox, message, flags=""):
        """APPEND with a synchronising literal, waiting for the continuation."""
        tag = next(self.tags).encode()
        head = "%s APPEND %s %s{%d}\r\n" % (tag.decode(), mailbox, (flags + " ") if flags else "", len(message))
        self.send(head.encode())
        line = self.read_line()
        if not line.startswith(b"+"):
            result = Result([], line.split(b" ")[1].decode().lower(), line)
            assert result.status == expect, result
            return result
        self.send(message + b"\r\n")
        result = self.finish(tag)
        assert result.status == expect, result
        return result

    def login(self, user, password):
        return self.transact("ok", 'LOGIN "%s" "%s"' % (user, password))

    def authenticate_plain(self, user, password, initial=True):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        if initial:
            return self.finish(self.command(b"AUTHENTICATE PLAIN " + token))
        tag = self.command(b"AUTHENTICATE PLAIN")
        line = self.read_line()
        assert line.startswith(b"+"), line
        self.send(token + b"\r\n")
        return self.finish(tag)

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def client_tls_context(ca_file):
    return ssl.create_default_context(cafile=str(ca_file))


def plain_socket(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)
