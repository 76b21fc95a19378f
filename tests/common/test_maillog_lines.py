"""Maillog write path: whole lines of at most PIPE_BUF bytes per write, so that processes never interleave."""

import io
import os
import re
import subprocess
import sys

from twisted.logger import Logger

from mailstack.common.maillog import PIPE_BUF, LineWriter, MaillogObserver, encode_lines
from tests.conftest import subprocess_env

_WRITER = r"""
import sys
from twisted.logger import Logger
from mailstack.common.maillog import MaillogObserver
name = sys.argv[1]
log = Logger(namespace="mailstack.smtpd", observer=MaillogObserver(sys.stdout, "h"))
for n in range(500):
    log.info("{name} line {n} " + name * 6000, name=name, n=n)
"""


def test_long_line_is_cut_into_tagged_lines():
    """A line over PIPE_BUF becomes several lines, each with the tag and at most PIPE_BUF bytes."""
    tag = "Nov 22 10:00:00 h mailstack/smtpd[1]: "
    text = "é" * 5000  # two bytes each: cuts must fall between characters
    lines = encode_lines(tag, [text, "short"])
    assert all(len(line) <= PIPE_BUF and line.startswith(tag.encode()) and line.endswith(b"\n") for line in lines)
    assert len(lines) == 4
    assert "".join(line.decode()[len(tag):-1] for line in lines[:-1]) == text
    assert lines[-1] == (tag + "short\n").encode()


def test_writer_chunks_are_whole_lines_within_pipe_buf(monkeypatch):
    """Buffered lines leave in write(2) calls of whole lines, none larger than PIPE_BUF."""
    read_end, write_end = os.pipe()
    writes = []
    try:
        with os.fdopen(write_end, "w", closefd=False) as stream:
            writer = LineWriter(stream)
            real_write = os.write

            def spy(fd, data):
                writes.append(bytes(data))
                return real_write(fd, data)
            lines = [b"x" * n + b"\n" for n in (100, 3000, 1500, 4095, 10, 2000)]
            writer.add(lines)
            monkeypatch.setattr(os, "write", spy)
            writer.flush()
            monkeypatch.undo()
        assert b"".join(writes) == b"".join(lines)
        assert all(len(w) <= PIPE_BUF and w.endswith(b"\n") for w in writes)
        assert [len(w) for w in writes] == [3102, 1501, 4096, 2012]
        assert os.read(read_end, 65536) == b"".join(lines)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_stream_without_descriptor_gets_text():
    """An in-memory stream (no fileno) receives the same lines through write()."""
    out = io.StringIO()
    Logger(namespace="mailstack.qmgr", observer=MaillogObserver(out, "h")).info("hello {who}", who="world")
    assert out.getvalue().endswith("mailstack/qmgr[%d]: hello world\n" % os.getpid())


def test_two_processes_on_one_pipe_never_interleave_lines():
    """Two processes logging long lines to one pipe at once: every line arrives whole."""
    command = [sys.executable, "-c", _WRITER]
    read_end, write_end = os.pipe()
    procs = [subprocess.Popen(command + [name], stdout=write_end, env=subprocess_env()) for name in ("a", "b")]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    # Lines of 6000 bytes are cut into tagged pieces of at most PIPE_BUF:
    # put back together per pid, each process's text comes out intact.
    shape = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d h mailstack/smtpd\[(\d+)\]: (.*)$")
    texts = {}
    for line in data.decode().splitlines():
        match = shape.match(line)
        assert match, line[:100]
        texts.setdefault(match.group(1), []).append(match.group(2))
    expected = {"".join("%s line %d %s" % (name, n, name * 6000) for n in range(500)) for name in "ab"}
    assert {"".join(pieces) for pieces in texts.values()} == expected


def test_broken_destination_drops_lines_instead_of_piling_them_up():
    """A pipe nobody reads any more (EPIPE): flush neither raises nor keeps the lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with os.fdopen(write_end, "w", closefd=False) as stream:
            writer = LineWriter(stream)
            writer.add([b"lost\n"] * 3)
            writer.flush()
            assert not writer._pending
    finally:
        os.close(write_end)
