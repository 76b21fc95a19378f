"""Shared fixtures: configuration directories made by ``mailstack init``, CLI runner."""

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from mailstack.admin import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*argv):
    """Run ``mailstack ARGV`` in-process; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors and --help
            status = exc.code
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def config_dir(tmp_path):
    """A fresh configuration directory written by ``mailstack init --ports dev``."""
    directory = tmp_path / "etc"
    status, out, err = run_cli("--config", directory, "init", "--ports", "dev",
                               "--domain", "example.test", "--hostname", "mail.example.test")
    assert status == 0, err
    return directory


def subprocess_env():
    """Environment for child processes (twistd, mailstack) that find this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env
