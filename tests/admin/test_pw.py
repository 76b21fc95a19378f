"""mailstack pw: hashes like doveadm pw, -l, -t, password from stdin."""

import io
import shutil
import subprocess

import pytest

from mailstack.auth.schemes import registry as schemes
from tests.conftest import run_cli


def test_list_schemes():
    """-l lists every scheme."""
    status, out, _ = run_cli("pw", "-l")
    assert status == 0 and out.split() == schemes.names()


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "CRAM-MD5", "SCRAM-SHA-256", "SSHA256", "PBKDF2"])
def test_generate_and_test(tmp_path, scheme):
    """A generated hash carries its prefix and passes -t with the same password, fails with another."""
    status, out, _ = run_cli("--config", tmp_path, "pw", "-s", scheme, "-p", "secret")
    stored = out.strip()
    assert status == 0 and stored.startswith("{%s}" % scheme)
    status, out, _ = run_cli("--config", tmp_path, "pw", "-t", stored, "-p", "secret")
    assert status == 0 and out.strip() == "%s (verified)" % stored
    status, _, err = run_cli("--config", tmp_path, "pw", "-t", stored, "-p", "wrong")
    assert status == 1 and "Password mismatch" in err


def test_default_scheme_comes_from_config(config_dir):
    """Without -s the scheme is default_pass_scheme (init sets SHA512-CRYPT); with no config, CRYPT."""
    status, out, _ = run_cli("--config", config_dir, "pw", "-p", "x")
    assert status == 0 and out.startswith("{SHA512-CRYPT}$6$")
    status, out, _ = run_cli("--config", config_dir / "none", "pw", "-p", "x")
    assert status == 0 and out.startswith("{CRYPT}$2y$05$")


def test_password_from_stdin(tmp_path, monkeypatch):
    """Without -p and without a terminal, the first line of standard input is the password."""
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    status, out, _ = run_cli("--config", tmp_path, "pw", "-s", "SHA256")
    assert status == 0 and schemes.verify("from stdin", out.strip())


def test_errors(tmp_path, monkeypatch):
    """Unknown schemes and empty input are fatal errors, not tracebacks."""
    status, _, err = run_cli("--config", tmp_path, "pw", "-s", "ROT13", "-p", "x")
    assert status == 1 and "unknown password scheme 'ROT13'" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    status, _, err = run_cli("--config", tmp_path, "pw", "-s", "SHA")
    assert status == 1 and "no password given" in err
    status, _, err = run_cli("--config", tmp_path, "pw", "-s", "SHA256", "-t", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
                             "-p", "secret")
    assert status == 1 and "hash is SHA, not SHA256" in err


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed")
def test_cli_hash_passes_doveadm(tmp_path):
    """What mailstack pw prints is accepted by doveadm pw -t."""
    _, out, _ = run_cli("--config", tmp_path, "pw", "-s", "BLF-CRYPT", "-p", "secret")
    result = subprocess.run(["doveadm", "-o", "log_path=/dev/null", "pw", "-t", out.strip(), "-p", "secret"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and "(verified)" in result.stdout


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_password_from_terminal_asked_twice(tmp_path, monkeypatch):
    """On a terminal the password is asked twice without echo; a mismatch is refused."""
    answers = iter(["first", "first", "one", "two"])
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    status, out, _ = run_cli("--config", tmp_path, "pw", "-s", "SSHA")
    assert status == 0 and schemes.verify("first", out.strip())
    status, _, err = run_cli("--config", tmp_path, "pw", "-s", "SSHA")
    assert status == 1 and "passwords don't match" in err
