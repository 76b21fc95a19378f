"""mailstack postconf: -n, -d, -h, -x, -e, -X and named parameters, as Postfix's postconf."""

from tests.conftest import run_cli


def test_n_shows_only_explicit_settings(config_dir):
    """-n prints what main.cf sets, sorted, unexpanded."""
    status, out, err = run_cli("-c", config_dir, "postconf", "-n")
    assert status == 0, err
    lines = out.splitlines()
    assert lines == sorted(lines)
    assert "myhostname = mail.example.test" in lines
    assert "myorigin = $mydomain" in lines
    assert not any(line.startswith("message_size_limit") for line in lines)


def test_d_shows_defaults(config_dir):
    """-d prints registry defaults, not main.cf's values."""
    status, out, _ = run_cli("-c", config_dir, "postconf", "-d", "myorigin", "message_size_limit")
    assert status == 0
    assert out == "myorigin = $myhostname\nmessage_size_limit = 10240000\n"


def test_h_and_x(config_dir):
    """-h drops names, -x expands $name."""
    _, out, _ = run_cli("-c", config_dir, "postconf", "-h", "myorigin")
    assert out == "$mydomain\n"
    _, out, _ = run_cli("-c", config_dir, "postconf", "-hx", "myorigin", "mydestination")
    assert out == "example.test\nmail.example.test, localhost.example.test, localhost\n"


def test_unknown_name_is_reported(config_dir):
    """Asking for an unknown parameter warns and exits non-zero."""
    status, out, err = run_cli("-c", config_dir, "postconf", "no_such_thing")
    assert status == 1
    assert "no_such_thing: unknown parameter" in err


def test_e_edits_in_place_keeping_comments(config_dir):
    """-e replaces a setting where it stands (continuations too) and appends new ones."""
    main_cf = config_dir / "main.cf"
    main_cf.write_text("# top comment\nmydestination = a,\n    b\n# keep me\nmail_name = x\n")
    status, _, err = run_cli("-c", config_dir, "postconf", "-e", "mydestination=c, d", "relayhost=[smart]:587")
    assert status == 0, err
    assert main_cf.read_text() == ("# top comment\nmydestination = c, d\n# keep me\nmail_name = x\n"
                                   "relayhost = [smart]:587\n")
    _, out, _ = run_cli("-c", config_dir, "postconf", "-h", "mydestination")
    assert out == "c, d\n"


def test_e_refuses_bad_value_and_keeps_file(config_dir):
    """-e with a bad value fails with a reason and leaves main.cf unchanged."""
    main_cf = config_dir / "main.cf"
    before = main_cf.read_text()
    status, _, err = run_cli("-c", config_dir, "postconf", "-e", "message_size_limit=huge")
    assert status == 1
    assert "message_size_limit: bad size value 'huge'" in err
    assert main_cf.read_text() == before


def test_X_removes(config_dir):
    """-X removes a parameter so its default applies again."""
    status, _, _ = run_cli("-c", config_dir, "postconf", "-X", "myorigin")
    assert status == 0
    _, out, _ = run_cli("-c", config_dir, "postconf", "-hx", "myorigin")
    assert out == "mail.example.test\n"


def test_help_for_every_command():
    """Every subcommand answers --help."""
    from mailstack.admin.cli import COMMANDS
    for name in COMMANDS:
        status, out, _ = run_cli(name, "--help")
        assert status == 0 and "usage: mailstack " + name in out, name
