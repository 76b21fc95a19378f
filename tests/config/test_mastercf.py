"""master.cf parsing: services, endpoints, programs and -o overrides."""

import pytest

from mailstack.config import mastercf
from mailstack.config.maincf import ConfigError


def test_standard_services_and_overrides():
    """Standard names need no program; -o settings keep their line."""
    entries = mastercf.parse(
        "# comment\n"
        "smtp tcp:25\n"
        "submission tcp:587 -o smtpd_sasl_auth_enable=yes\n"
        "   -o smtpd_tls_security_level=encrypt\n"
        "qmgr -\n"
        "alt tcp:2526:interface=127.0.0.1 smtpd -o { smtpd_banner = $myhostname hello there }\n")
    assert [(e.name, e.endpoint, e.program) for e in entries] == [
        ("smtp", "tcp:25", "smtpd"), ("submission", "tcp:587", "smtpd"),
        ("qmgr", None, "qmgr"), ("alt", "tcp:2526:interface=127.0.0.1", "smtpd")]
    sub = entries[1]
    assert [(o.name, o.text, o.line) for o in sub.overrides] == [
        ("smtpd_sasl_auth_enable", "yes", 3), ("smtpd_tls_security_level", "encrypt", 3)]
    assert entries[3].overrides[0].text == "$myhostname hello there"


@pytest.mark.parametrize("text, reason", [
    ("smtp\n", r"master.cf:1: expected 'name endpoint"),
    ("smtp 25\n", r"master.cf:1: bad endpoint '25'"),
    ("weird tcp:99\n", r"master.cf:1: service 'weird' needs a program"),
    ("smtp tcp:25\nsmtp tcp:26\n", r"master.cf:2: duplicate service 'smtp'"),
    ("smtp tcp:25 -o\n", r"master.cf:1: -o needs name=value"),
    ("smtp tcp:25 -o novalue\n", r"master.cf:1: bad -o argument 'novalue'"),
    ("smtp tcp:25 -x y\n", r"master.cf:1: unexpected '-x'"),
], ids=["short", "endpoint", "program", "duplicate", "o-missing", "o-bad", "option"])
def test_errors_name_the_line(text, reason):
    """Malformed lines are errors as master.cf:LINE: reason."""
    with pytest.raises(ConfigError, match="^" + reason):
        mastercf.parse(text)
