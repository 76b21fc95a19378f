"""main.cf parsing: syntax, continuation lines, $name expansion, loops, typed values."""

import pytest

from mailstack.config import maincf
from mailstack.config.maincf import ConfigError, Environment

ENV = Environment(hostname="mail.example.com", config_directory="/etc/mailstack")


def load_text(text):
    return maincf.Config(maincf.parse_lines(text), ENV).validate()


def test_name_value_and_whitespace():
    """Spaces around '=' and at the ends of values are ignored."""
    config = load_text("myhostname=  host.example.org  \nmail_name   =   Mail Stack\n")
    assert config["myhostname"] == "host.example.org"
    assert config["mail_name"] == "Mail Stack"


def test_continuation_lines_and_comments():
    """A line starting with white space continues the previous one; # lines are comments."""
    config = load_text(
        "# a comment\n"
        "mydestination = a.example,\n"
        "    b.example\n"
        "# comment inside\n"
        "\tc.example\n"
        "\n"
        "relay_domains = x.example # not a comment\n")
    assert config["mydestination"] == ("a.example", "b.example", "c.example")
    assert config["relay_domains"] == ("x.example", "#", "not", "a", "comment")


def test_continuation_without_parameter_is_an_error():
    """A file cannot start with a continuation line."""
    with pytest.raises(ConfigError, match=r"^main.cf:2: continuation line"):
        maincf.parse_lines("# x\n   foo = bar\n")


def test_missing_equals_names_the_line():
    """A line without '=' is an error with its line number."""
    with pytest.raises(ConfigError, match=r"^main.cf:3: missing '='"):
        maincf.parse_lines("a = b\n\nthis line is wrong\n")


def test_expansion_forms():
    """$name, ${name} and $(name) expand recursively; $$ is a dollar."""
    config = load_text("mydomain = example.com\nmyorigin = ${mydomain}\n"
                       "mail_name = $(myorigin)-$$x\nsmtpd_banner = $myhostname ready\n")
    assert config["myorigin"] == "example.com"
    assert config["mail_name"] == "example.com-$x"
    assert config["smtpd_banner"] == "mail.example.com ready"


def test_default_expansions_follow_postfix():
    """Defaults: mydomain is myhostname minus a label, mydestination lists both."""
    config = load_text("")
    assert config["mydomain"] == "example.com"
    assert config["myorigin"] == "mail.example.com"
    assert config["mydestination"] == ("mail.example.com", "localhost.example.com", "localhost")
    assert config["message_size_limit"] == 10240000
    assert config["smtpd_banner"] == "mail.example.com ESMTP mailstack"


@pytest.mark.parametrize("text, expected", [
    ("relayhost = ${myorigin?yes}", "yes"),
    ("relayhost = ${virtual_mailbox_base?yes}", ""),
    ("relayhost = ${virtual_mailbox_base:empty}", "empty"),
    ("relayhost = ${myorigin:empty}", ""),
    ("relayhost = ${myorigin?{set}:{unset}}", "set"),
    ("relayhost = ${virtual_mailbox_base?{set}:{unset}}", "unset"),
], ids=["?-set", "?-empty", ":-empty", ":-set", "?:-set", "?:-empty"])
def test_conditional_expansion(text, expected):
    """${name?value} and ${name:value} behave as postconf(5) says."""
    assert load_text(text)["relayhost"] == expected


def test_expansion_loop_is_an_error():
    """A $name loop is reported with where it starts and the chain."""
    with pytest.raises(ConfigError, match=r"main.cf:1: parameter myorigin: recursive parameter expansion: "
                                          r"\$myorigin -> \$mydomain -> \$myorigin"):
        load_text("myorigin = $mydomain\nmydomain = $myorigin\n")


def test_self_loop_is_an_error():
    """A parameter that refers to itself is a loop too."""
    with pytest.raises(ConfigError, match="recursive"):
        load_text("relayhost = [$relayhost]\n")


@pytest.mark.parametrize("text, reason", [
    ("message_size_limit = lots", r"main.cf:1: parameter message_size_limit: bad size value 'lots'"),
    ("\n\nsmtpd_tls_auth_only = maybe", r"main.cf:3: parameter smtpd_tls_auth_only: bad boolean value 'maybe'"),
    ("auth_cache_ttl = 5 minutes", r"main.cf:1: parameter auth_cache_ttl: bad time value"),
    ("mynetworks_style = everything", r"main.cf:1: parameter mynetworks_style: bad value 'everything'"),
    ("alias_maps = /etc/aliases", r"main.cf:1: parameter alias_maps: bad table '/etc/aliases'"),
    ("passdb = Bad Driver", r"main.cf:1: parameter passdb: bad driver"),
], ids=["size", "bool", "time", "choice", "maps", "driver"])
def test_bad_values_name_file_and_line(text, reason):
    """A bad value stops loading with main.cf:LINE: reason."""
    with pytest.raises(ConfigError, match="^" + reason):
        load_text(text)


def test_bad_value_reached_through_expansion():
    """A value that becomes bad after expansion is reported on its own line."""
    with pytest.raises(ConfigError, match=r"^main.cf:2: parameter message_size_limit: bad size value 'big'"):
        load_text("mail_name = big\nmessage_size_limit = $mail_name\n")


@pytest.mark.parametrize("text, seconds", [
    ("300s", 300), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("90", 90),
])
def test_time_units(text, seconds):
    """Time values take Postfix's s/m/h/d/w suffixes; a bare number uses the parameter's unit."""
    assert load_text("auth_cache_ttl = " + text)["auth_cache_ttl"] == seconds


def test_time_default_unit_is_per_parameter():
    """imap_idle_timeout counts in minutes when no unit is given."""
    assert load_text("imap_idle_timeout = 5")["imap_idle_timeout"] == 300


def test_unknown_name_warns_unless_referenced():
    """An unknown name is a warning; a user-defined name used in $expansion is not."""
    config = load_text("mystery = 1\nmy_domain_list = a.example\nrelay_domains = $my_domain_list\n")
    assert config["relay_domains"] == ("a.example",)
    assert config.warnings == ["main.cf:1: unknown parameter mystery (ignored)"]


def test_duplicate_setting_warns_and_last_wins(tmp_path):
    """As in Postfix, a later setting overrides an earlier one, with a warning."""
    (tmp_path / "main.cf").write_text("mail_name = one\nmail_name = two\n")
    config = maincf.load(str(tmp_path))
    assert config["mail_name"] == "two"
    assert any("main.cf:2: overriding earlier entry" in w for w in config.warnings)


def test_braces_keep_list_items_together():
    """inline:{ a=b, c=d } stays one item in a list."""
    config = load_text("virtual_alias_maps = inline:{ a@x=b@y, c@x=d@y } hash:/etc/virtual\n")
    assert config["virtual_alias_maps"] == ("inline:{ a@x=b@y, c@x=d@y }", "hash:/etc/virtual")


def test_with_overrides_reports_master_cf_line():
    """A bad -o override names master.cf and its line."""
    config = load_text("")
    bad = maincf.Setting("smtpd_tls_auth_only", "perhaps", "master.cf", 7)
    with pytest.raises(ConfigError, match=r"^master.cf:7: parameter smtpd_tls_auth_only"):
        config.with_overrides([bad])
    good = config.with_overrides([maincf.Setting("smtpd_tls_auth_only", "yes", "master.cf", 7)])
    assert good["smtpd_tls_auth_only"] is True
    assert config["smtpd_tls_auth_only"] is False


def test_mynetworks_style_default():
    """mynetworks follows mynetworks_style and always has loopback."""
    config = load_text("mynetworks_style = host")
    assert config["mynetworks"][:2] == ("127.0.0.0/8", "[::1]/128")
