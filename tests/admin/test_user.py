"""mailstack user add/passwd/del/list/show and mailstack auth test, on init's passwd-file."""

import io
import os
import threading

from mailstack.auth import passwd_edit
from mailstack.auth.schemes import registry as schemes
from tests.conftest import run_cli


def _passwd(config_dir):
    return (config_dir / "passwd").read_text()


def test_add_then_show_gives_maildir_location(config_dir):
    """user add creates a user for which user show prints uid, gid, home and mail=maildir:PATH."""
    status, out, err = run_cli("--config", config_dir, "user", "add", "Demo@Example.test", "--password", "demo")
    assert status == 0, err
    assert "demo@example.test:{SHA512-CRYPT}$6$" in _passwd(config_dir)
    status, out, err = run_cli("--config", config_dir, "user", "show", "demo@example.test")
    assert status == 0, err
    fields = dict(line.split("=", 1) for line in out.splitlines())
    mail_dir = os.path.join(str(config_dir), "mail")
    assert fields["user"] == "demo@example.test"
    assert fields["uid"] == str(os.getuid()) and fields["gid"] == str(os.getgid())
    assert fields["mail"] == "maildir:%s/example.test/demo/Maildir" % mail_dir
    assert fields["home"] == "%s/example.test/demo" % mail_dir


def test_show_unknown_user_fails(config_dir):
    """user show exits 67 for an unknown user (what make run relies on)."""
    status, _, err = run_cli("--config", config_dir, "user", "show", "nobody@example.test")
    assert status == 67 and "doesn't exist" in err


def test_add_twice_is_an_error(config_dir):
    """Adding an existing user fails and leaves the file alone."""
    run_cli("--config", config_dir, "user", "add", "a@example.test", "--password", "x")
    before = _passwd(config_dir)
    status, _, err = run_cli("--config", config_dir, "user", "add", "A@example.test", "--password", "y")
    assert status == 1 and "already exists" in err
    assert _passwd(config_dir) == before


def test_options_scheme_uid_home_quota(config_dir):
    """--scheme, --uid, --gid, --home and --quota end up in the passwd-file and userdb."""
    status, _, err = run_cli("--config", config_dir, "user", "add", "q@example.test", "--password", "pw",
                             "--scheme", "ARGON2ID", "--uid", "5000", "--gid", "5001", "--home", "/var/vmail/q",
                             "--quota", "10M")
    assert status == 0, err
    line = [l for l in _passwd(config_dir).splitlines() if l.startswith("q@")][0]
    assert line.split(":")[1].startswith("{ARGON2ID}$argon2id$")
    assert line.endswith(":5000:5001::/var/vmail/q::userdb_quota_rule=*:storage=10M")
    _, out, _ = run_cli("--config", config_dir, "user", "show", "q@example.test")
    assert "home=/var/vmail/q\n" in out and "quota_bytes=%d\n" % (10 * 1024 * 1024) in out


def test_passwd_del_list_and_comments_kept(config_dir, monkeypatch):
    """passwd changes only the password (read from stdin), del removes the line, comments survive."""
    for user in ("a@example.test", "b@example.test"):
        run_cli("--config", config_dir, "user", "add", user, "--password", "old")
    monkeypatch.setattr("sys.stdin", io.StringIO("new password\n"))
    status, _, err = run_cli("--config", config_dir, "user", "passwd", "a@example.test", "--scheme", "SSHA512")
    assert status == 0, err
    stored = [l for l in _passwd(config_dir).splitlines() if l.startswith("a@")][0].split(":")[1]
    assert stored.startswith("{SSHA512}") and schemes.verify("new password", stored)
    status, out, _ = run_cli("--config", config_dir, "user", "list")
    assert out.split() == ["a@example.test", "b@example.test"]
    assert run_cli("--config", config_dir, "user", "del", "a@example.test")[0] == 0
    assert run_cli("--config", config_dir, "user", "list")[1].split() == ["b@example.test"]
    assert _passwd(config_dir).startswith("# Dovecot passwd-file")
    status, _, err = run_cli("--config", config_dir, "user", "del", "a@example.test")
    assert status == 1 and "does not exist" in err


def test_auth_test_success_and_failure(config_dir):
    """auth test exits 0 with the passdb fields, 77 with the reason on a wrong password or unknown user."""
    run_cli("--config", config_dir, "user", "add", "t@example.test", "--password", "pw", "--quota", "1G")
    status, out, _ = run_cli("--config", config_dir, "auth", "test", "T@example.test", "pw")
    assert status == 0
    assert out.splitlines()[:2] == ["passdb: T@example.test auth succeeded", "extra fields:"]
    assert "  user=t@example.test" in out and "  userdb_quota_rule=*:storage=1G" in out and "{" not in out
    status, out, err = run_cli("--config", config_dir, "auth", "test", "t@example.test", "bad")
    assert status == 77 and "auth failed" in out and "Password mismatch" in err
    status, _, err = run_cli("--config", config_dir, "auth", "test", "ghost@example.test", "bad")
    assert status == 77 and "unknown user" in err


def test_auth_test_internal_failure(config_dir):
    """A missing passwd-file makes auth test exit 75 (temporary), not 'unknown user'."""
    (config_dir / "passwd").unlink()
    status, _, err = run_cli("--config", config_dir, "auth", "test", "t@example.test", "pw")
    assert status == 75 and "No such file" in err


def test_concurrent_adds_lose_nothing(tmp_path):
    """Parallel writers serialise on the lock: every user added ends up in the file."""
    path = str(tmp_path / "passwd")

    def add(n):
        passwd_edit.add_user(path, passwd_edit.format_line("u%d" % n, "{PLAIN}x"))

    workers = [threading.Thread(target=add, args=(n,)) for n in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(passwd_edit.list_users(path)) == sorted("u%d" % n for n in range(20))


def test_non_passwd_file_passdb_is_refused(config_dir):
    """user add explains that it only edits passwd-file passdbs."""
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("passdb = static:nopassword\n")
    status, _, err = run_cli("--config", config_dir, "user", "add", "x@example.test", "--password", "x")
    assert status == 1 and "edits passwd-file passdbs only" in err
