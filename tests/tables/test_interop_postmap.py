"""Interop: mailstack's tables answer exactly as Postfix's own postmap/postalias on the same files."""

import io
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli

POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"
POSTALIAS = shutil.which("postalias") or "/usr/sbin/postalias"

pytestmark = pytest.mark.skipif(not os.path.exists(POSTMAP), reason="Postfix's postmap is not installed")

REGEXP = r"""# regexp sample
/^postmaster@/            OK
/[%!@].*[%!@]/            550 Sender-specified routing rejected
if !/^owner-/
/^(.*)-outgoing@(.*)$/    550 Use ${1}@${2} instead
endif
/^[[:digit:]]+\.[[:digit:]]+$/   digits $$1
/^Subject: (.*) money/i   CASE $1
/^subject: (.*)money/     nocase $1
/^a.b$/                   dot
/^x(y)?z$/                r=$1,$(1)x
!/@/                      no-at
/^([a-z]+)\.([a-z]+)@example\.com$/  first=$1
    last=$2
/\<cat\>/                 word
/^[^]a-]+$/               notbracket
/^b\(c\)$/x               basic $1
/^m$/m                    multi
"""

# POSIX extended syntax details: intervals, classes, brackets, backslashes, back-references.
REGEXP_SYNTAX = r"""/^(ab|cd)+$/ alt $1
/^a{2,3}$/ interval
/^a{2}b{1,}$/ interval2
/^[[:alpha:]][[:alnum:]_.-]*@[[:lower:]]+$/ addr
/^[[:upper:]]+$/i upperi
/^[[:upper:]]+$/ upper
/^[^@]+@[^.]+\.example$/ dotex
/\.$/ trailingdot
/^\[[0-9.]+\]$/ literal
/^(a)(b)(c)(d)(e)(f)(g)(h)(i)$/ nine $9$8$1
/^.*\+.*$/ plus
/^x\|y$/ pipe
/[\\]/ backslash
/^(x)\1$/ backref
/^[a\]]+$/ class-with-backslash
/^[]]$/ close
/^[-a]+$/ dash
/^a\.b$/ escdot
/^\(paren\)$/ parens
/^q\{2\}$/ brace
/^(foo|foobar)$/ longest $1
/^(a*)(a*)$/ greedy [$1][$2]
/^[0-9]{1,3}(\.[0-9]{1,3}){3}$/ ipv4
/^$/ empty
"""

SYNTAX_KEYS = r"""abcd
ababab
aa
aaa
aaaa
aab
aabbb
John.Doe@example
ABC
abc
x@y.example
end.
[1.2.3.4]
abcdefghi
a+b
x|y
a\b
xx
xy
a]\
]
-a-
a.b
axb
(paren)
q{2}
qq
foobar
aaaa
192.168.1.1
1.2.3
"""

CIDR = """192.168.1.1      OK
192.168.0.0/16   REJECT
2001:db8::1      OK6
2001:db8::/32    REJECT6
if 10.0.0.0/8
!10.1.0.0/16     ten-not-one
endif
[172.16.0.0]/12  bracket
::ffff:0:0/96    mapped
::1              loop6
fe80::/10        linklocal
0.0.0.0/0        any4
"""

SOURCE = """User@Example.COM   Value  With   Spaces
example.com  domain
  continued here
1.2.3 net
a 1
a 2
"""

ALIASES = """# aliases
Postmaster: root
staff: alice,
  bob
x: a
   b  c
cmd: "|/bin/echo  a   b",  c
"""

KEYS = """postmaster@example.com
a%b@c
list-outgoing@example.org
owner-list-outgoing@example.org
12.34
Subject: make money
SUBJECT: MAKE MONEY
subject: make money
a
b
anb
xz
xyz
john.smith@example.com
the cat sat
concat
bc
b(c)
m
192.168.1.1
192.168.9.9
2001:db8::1
2001:db8::2
2001:0db8:0:0::3
10.2.3.4
10.1.3.4
172.20.0.1
::ffff:192.168.1.1
user@example.com
EXAMPLE.COM
1.2.3
hello
[192.168.1.1]
::ffff:1.2.3.4
0:0:0:0:0:0:0:1
fe80::1%eth0
fe80::1
01.2.3.4
::
postmaster
staff
x
cmd
"""


@pytest.fixture(scope="module")
def postfix_dir(tmp_path_factory):
    """A Postfix configuration directory, its files dated in the past.

    Postfix waits for a main.cf modified in the last seconds to settle
    (300 ms sleeps), so the files get an old timestamp.
    """
    directory = tmp_path_factory.mktemp("postfix")
    _write(directory / "main.cf", "myhostname = localhost.localdomain\nmydomain = localdomain\n")
    _write(directory / "master.cf", "")
    return directory


def _write(path, text):
    """Write a file dated an hour ago, so that Postfix does not wait for it to settle."""
    path.write_text(text)
    past = time.time() - 3600
    os.utime(path, (past, past))


@pytest.fixture
def workdir(tmp_path, postfix_dir):
    """A directory with the sample tables; Postfix runs with postfix_dir's configuration."""
    for name, text in (("re", REGEXP), ("syntax", REGEXP_SYNTAX), ("nets", CIDR), ("source", SOURCE),
                       ("aliases", ALIASES)):
        _write(tmp_path / name, text)
    return _Workdir(tmp_path, postfix_dir)


class _Workdir(type(__import__("pathlib").Path())):
    """The test's directory (a Path) that also knows Postfix's configuration directory."""

    def __new__(cls, path, postfix):
        self = super().__new__(cls, path)
        self.postfix = postfix
        return self


def _postfix(workdir, program, spec, keys=KEYS):
    result = subprocess.run([program, "-c", str(workdir.postfix), "-q", "-", spec], input=keys,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def _ours(workdir, spec, monkeypatch, keys=KEYS):
    monkeypatch.setattr(sys, "stdin", io.StringIO(keys))
    status, out, err = run_cli("-c", workdir, "postmap", "-q", "-", spec)
    assert status in (0, 1), err
    return out


@pytest.mark.parametrize("spec", [
    "regexp:{dir}/re",
    "cidr:{dir}/nets",
    "texthash:{dir}/source",
    "inline:{{ a=1, {{ b = two words }}, A=3, 1.2.3=net }}",
    "static:{{ any thing }}",
], ids=["regexp", "cidr", "texthash", "inline", "static"])
def test_same_answers_as_postfix(workdir, spec, monkeypatch):
    """postmap -q - gives the same key/value lines as Postfix's postmap for the same table."""
    spec = spec.format(dir=workdir)
    expected = _postfix(workdir, POSTMAP, spec)
    assert expected  # the sample keys must find something
    assert _ours(workdir, spec, monkeypatch) == expected


def test_posix_syntax_same_answers_as_postfix(workdir, monkeypatch):
    """POSIX regular expression details translate to Python with Postfix's answers."""
    spec = "regexp:%s" % (workdir / "syntax")
    expected = _postfix(workdir, POSTMAP, spec, SYNTAX_KEYS)
    assert expected.count("\n") >= 25
    assert _ours(workdir, spec, monkeypatch, SYNTAX_KEYS) == expected


def test_hash_same_answers_as_postfix(workdir, monkeypatch):
    """A hash table built by each postmap from the same source answers the same."""
    theirs, ours = workdir / "theirs", workdir / "ours"
    theirs.mkdir()
    ours.mkdir()
    for directory in (theirs, ours):
        _write(directory / "access", SOURCE)
    subprocess.run([POSTMAP, "-c", str(workdir.postfix), str(theirs / "access")], check=True,
                   capture_output=True, timeout=20)
    status, _, err = run_cli("-c", workdir, "postmap", str(ours / "access"))
    assert status == 0, err
    expected = _postfix(workdir, POSTMAP, "hash:%s" % (theirs / "access"))
    assert _ours(workdir, "hash:%s" % (ours / "access"), monkeypatch) == expected


@pytest.mark.skipif(not os.path.exists(POSTALIAS), reason="Postfix's postalias is not installed")
def test_aliases_same_answers_as_postalias(workdir, monkeypatch):
    """newaliases' alias syntax gives the values Postfix's postalias gives."""
    theirs = workdir / "theirs"
    theirs.mkdir()
    _write(theirs / "aliases", ALIASES)
    subprocess.run([POSTALIAS, "-c", str(workdir.postfix), str(theirs / "aliases")], check=True,
                   capture_output=True, timeout=20)
    # postalias -q - prints "key:<TAB>value"; postmap -q - prints "key<TAB>value".
    expected = _postfix(workdir, POSTALIAS, "hash:%s" % (theirs / "aliases")).replace(":\t", "\t")
    (workdir / "main.cf").write_text("alias_database = hash:%s\n" % (workdir / "aliases"))
    status, _, err = run_cli("-c", workdir, "newaliases")
    assert status == 0, err
    assert _ours(workdir, "hash:%s" % (workdir / "aliases"), monkeypatch) == expected
