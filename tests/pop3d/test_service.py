"""The pop3d master.cf program: configuration checks at startup."""

import pytest
from twisted.internet import reactor

from mailstack import app
from mailstack.config.maincf import ConfigError


def test_bad_uidl_format_stops_startup(config_dir):
    """An unusable pop3_uidl_format stops startup with main.cf:LINE and the reason."""
    with open(config_dir / "main.cf", "a") as handle:
        handle.write("pop3_uidl_format = %m\n")
    line = (config_dir / "main.cf").read_text().count("\n")
    (config_dir / "master.cf").write_text("pop3 tcp:0:interface=127.0.0.1\n")
    with pytest.raises(ConfigError, match=r"main.cf:%d: pop3_uidl_format: unknown variable %%m" % line):
        app.make_service(str(config_dir), reactor=reactor)


def test_pop3_program_is_built(config_dir):
    """pop3 and pop3s from init's master.cf are started by the pop3d program."""
    (config_dir / "master.cf").write_text("pop3 tcp:0:interface=127.0.0.1\npop3s ssl:0:interface=127.0.0.1\n")
    root = app.make_service(str(config_dir), reactor=reactor)
    assert sorted(s.name for s in root) == ["pop3", "pop3s"]
    assert app.program_module("pop3d").__name__ == "mailstack.pop3d.service"
