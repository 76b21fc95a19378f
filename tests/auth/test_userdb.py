"""userdb drivers: passwd-file columns and userdb_ fields, static with %variables."""

import pytest_twisted

from mailstack.auth.passdb.base import DriverContext
from mailstack.auth.userdb.passwd_file import PasswdFileUserdb
from mailstack.auth.userdb.static import StaticUserdb
from tests.auth.helpers import service, sync_threads, write_config

CTX = DriverContext(None, sync_threads)


@pytest_twisted.ensureDeferred
async def test_passwd_file_userdb_fields(tmp_path):
    """uid, gid, home come from their columns; userdb_* extra fields lose their prefix."""
    (tmp_path / "passwd").write_text("joe:{PLAIN}x:1000:100::/home/joe::userdb_mail=maildir:/m/joe "
                                     "userdb_quota_rule=*:storage=1G allow_nets=10.0.0.0/8\n")
    db = PasswdFileUserdb(str(tmp_path / "passwd"), CTX)
    assert await db.lookup("joe") == {"uid": "1000", "gid": "100", "home": "/home/joe",
                                      "mail": "maildir:/m/joe", "quota_rule": "*:storage=1G"}
    assert await db.lookup("ann") is None


@pytest_twisted.ensureDeferred
async def test_static_userdb_expands_variables():
    """static userdb fields expand %u, %n, %d and %Ld."""
    db = StaticUserdb("uid=5000 gid=5000 home=/var/vmail/%Ld/%n mail=maildir:~/Maildir", CTX)
    assert await db.lookup("joe@Example.COM") == {"uid": "5000", "gid": "5000", "home": "/var/vmail/example.com/joe",
                                                  "mail": "maildir:~/Maildir"}


@pytest_twisted.ensureDeferred
async def test_static_userdb_through_service(tmp_path):
    """With a static userdb every user exists, and ~ expands to the static home."""
    auth = service(write_config(tmp_path, "userdb = static:uid=5000 gid=5000 home=/var/vmail/%d/%n "
                                          "mail=maildir:~/Maildir quota_rule=*:storage=512k\n"))
    info = await auth.lookup_user("Ann@Example.com")
    assert (info.user, info.uid, info.gid) == ("ann@example.com", 5000, 5000)
    assert info.mail == "maildir:/var/vmail/example.com/ann/Maildir"
    assert info.quota_bytes == 512 * 1024
    assert dict(info.fields())["home"] == "/var/vmail/example.com/ann"
