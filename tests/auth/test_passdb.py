"""passdb drivers: passwd-file (format, %d paths, re-read on change), static."""

import os

import pytest
import pytest_twisted

from mailstack.auth.passdb.base import DriverContext, PassdbError
from mailstack.auth.passdb.passwd_file import PasswdFilePassdb, parse_passwd_file
from mailstack.auth.passdb.static import StaticPassdb
from mailstack.auth.schemes import registry as schemes
from tests.auth.helpers import REQUEST, service, sync_threads, write_config

CTX = DriverContext(None, sync_threads)


def test_passwd_file_format():
    """All eight Dovecot fields are parsed; short lines, comments and blank lines are fine."""
    users = parse_passwd_file("# comment\n\njoe:{PLAIN}x:1000:100:Joe:/home/joe:/bin/sh:userdb_mail=maildir:/m "
                              "nopassword allow_nets=10.0.0.0/8\nann:{SHA}abc\n")
    joe = users["joe"]
    assert (joe.password, joe.uid, joe.gid, joe.gecos, joe.home, joe.shell) == (
        "{PLAIN}x", 1000, 100, "Joe", "/home/joe", "/bin/sh")
    assert joe.extra == {"userdb_mail": "maildir:/m", "nopassword": "", "allow_nets": "10.0.0.0/8"}
    assert users["ann"].uid == -1 and users["ann"].home == ""


def test_passwd_file_line_without_user_is_an_error():
    """A line with an empty user name is reported with its line number."""
    with pytest.raises(PassdbError, match="passwd:2: missing user name"):
        parse_passwd_file("joe:x\n:y\n")


@pytest_twisted.ensureDeferred
async def test_passwd_file_reread_when_changed(tmp_path):
    """A changed file is re-read on the next lookup (new inode, size or mtime)."""
    path = tmp_path / "passwd"
    path.write_text("joe:{PLAIN}one::::::\n")
    db = PasswdFilePassdb(str(path), CTX)
    assert (await db.lookup("joe")).password == "{PLAIN}one"
    tmp = tmp_path / "passwd.new"
    tmp.write_text("joe:{PLAIN}two::::::\nann:{PLAIN}x::::::\n")
    os.replace(tmp, path)
    assert (await db.lookup("joe")).password == "{PLAIN}two"
    assert (await db.lookup("ann")) is not None


@pytest_twisted.ensureDeferred
async def test_passwd_file_per_domain_path(tmp_path):
    """%d in the path selects a file per domain; a missing domain file means unknown user."""
    (tmp_path / "example.com").mkdir()
    (tmp_path / "example.com" / "passwd").write_text("joe@example.com:{PLAIN}x::::::\n")
    db = PasswdFilePassdb("%s/%%d/passwd" % tmp_path, CTX)
    assert (await db.lookup("joe@example.com")).password == "{PLAIN}x"
    assert await db.lookup("joe@example.org") is None


@pytest_twisted.ensureDeferred
async def test_passwd_file_options(tmp_path):
    """scheme= sets the scheme of bare hashes; username_format=%n looks up the local part."""
    (tmp_path / "passwd").write_text("joe:%s::::::\n" % schemes.generate("SHA256-CRYPT", "pw").split("}", 1)[1])
    config = write_config(tmp_path, "passdb = passwd-file:scheme=SHA256-CRYPT username_format=%%n %s/passwd\n"
                          % tmp_path)
    auth = service(config)
    assert (await auth.verify_plain("joe@example.com", "pw", REQUEST)).kind == "success"
    assert (await auth.verify_plain("joe@example.com", "px", REQUEST)).kind == "failure"


@pytest_twisted.ensureDeferred
async def test_nopassword_field_accepts_any_password(tmp_path):
    """A passwd-file user with nopassword and an empty password field logs in with anything."""
    auth = service(write_config(tmp_path, "", "guest:::::::nopassword\nlocked:::::::\n"))
    assert (await auth.verify_plain("guest", "whatever", REQUEST)).kind == "success"
    step = await auth.verify_plain("locked", "", REQUEST)
    assert step.kind == "failure" and "No password in passdb" in step.reason


@pytest_twisted.ensureDeferred
async def test_static_passdb(tmp_path):
    """static:password= gives every user that password (PLAIN unless prefixed)."""
    db = StaticPassdb("password=letmein", CTX)
    entry = await db.lookup("anyone@example.com")
    assert entry.password == "{PLAIN}letmein" and db.credentials_lookup
    auth = service(write_config(tmp_path, "passdb = static:password=%s\nauth_mechanisms = plain cram-md5\n"
                                % schemes.generate("CRAM-MD5", "letmein")))
    assert (await auth.verify_plain("who@ever", "letmein", REQUEST)).kind == "success"
    assert auth.mechanisms(True) == ["PLAIN", "CRAM-MD5"]


@pytest_twisted.ensureDeferred
async def test_static_nopassword(tmp_path):
    """static:nopassword accepts any password but cannot serve CRAM-MD5."""
    auth = service(write_config(tmp_path, "passdb = static:nopassword\n"))
    assert (await auth.verify_plain("who@ever", "x", REQUEST)).kind == "success"
