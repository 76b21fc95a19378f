"""Golden restriction transcripts (tests/golden/smtpd_restrictions.txt): commands, replies, log lines."""

import os
import socket

import pytest
import pytest_twisted

from tests.smtpd.harness import in_thread

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden", "smtpd_restrictions.txt")


def load_cases(path=GOLDEN):
    cases, current = [], None
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("## "):
                current = {"name": line[3:], "settings": {}, "steps": [], "logs": []}
                cases.append(current)
            elif current is None or not line.strip() or line.startswith("#"):
                continue
            elif line.startswith("settings: "):
                for item in line[len("settings: "):].split(" | "):
                    name, _, value = item.partition("=")
                    current["settings"][name.strip()] = value.strip()
            elif line.startswith("> "):
                current["steps"].append([line[2:], None])
            elif line.startswith("< "):
                current["steps"][-1][1] = line[2:]
            elif line.startswith("= "):
                current["logs"].append(line[2:])
    return cases


def converse(port, steps):
    """Send each command, read its reply; return the last line of every reply."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    replies = []
    try:
        stream = sock.makefile("rb")
        stream.readline()
        for command, _ in steps + [["QUIT", None]]:
            sock.sendall(command.encode() + b"\r\n")
            while True:
                line = stream.readline().decode().rstrip("\r\n")
                if line[3:4] != "-":
                    replies.append(line)
                    break
        stream.close()
    finally:
        sock.close()
    return replies


CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest_twisted.ensureDeferred
async def test_golden_transcript(smtpd, case):
    """Each golden case gets exactly the replies and log lines written in the transcript."""
    server = await smtpd(**case["settings"])
    replies = await in_thread(converse, server.port, case["steps"])
    for (command, expected), reply in zip(case["steps"], replies):
        if expected is not None:
            assert reply == expected, command
    for line in case["logs"]:
        assert server.logs.grep(line), line
