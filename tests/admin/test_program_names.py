"""The Postfix-named programs (sendmail, mailq, newaliases) that applications and admins call directly."""

import os
import subprocess
import sys

from tests.conftest import subprocess_env

BIN = os.path.dirname(sys.executable)


def _run(program, *args, data=b""):
    return subprocess.run([os.path.join(BIN, program), *args], input=data, capture_output=True,
                          env=subprocess_env(), timeout=30)


def test_sendmail_with_dash_C_queues_into_maildrop(config_dir):
    """'sendmail -C DIR -t' (how PHP, cron and mutt call it) writes the message to maildrop/."""
    result = _run("sendmail", "-C", str(config_dir / "main.cf"), "-t", "-i",
                  data=b"To: alice@example.test\nSubject: cron\n\nhello\n")
    assert result.returncode == 0, result.stderr
    (drop,) = list((config_dir / "queue" / "maildrop").iterdir())
    assert b"alice@example.test" in drop.read_bytes()


def test_mailq_and_newaliases_use_MAILSTACK_CONFIG(config_dir):
    """mailq and newaliases find the configuration through $MAILSTACK_CONFIG."""
    env = dict(subprocess_env(), MAILSTACK_CONFIG=str(config_dir))
    mailq = subprocess.run([os.path.join(BIN, "mailq")], capture_output=True, text=True, env=env, timeout=30)
    assert mailq.returncode == 0 and mailq.stdout == "Mail queue is empty\n"
    aliases = subprocess.run([os.path.join(BIN, "newaliases")], capture_output=True, text=True, env=env, timeout=30)
    assert aliases.returncode == 0, aliases.stderr


def test_dash_C_without_value_is_a_usage_error():
    """A bare -C gets a clear message and EX_USAGE."""
    result = _run("sendmail", "-C")
    assert result.returncode == 64
    assert b"-C needs a configuration directory" in result.stderr
