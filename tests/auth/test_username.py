"""User name normalisation and %variables."""

import pytest

from mailstack.auth import username


@pytest.mark.parametrize("template,user,expected", [
    ("%u", "Joe@Example.COM", "Joe@Example.COM"),
    ("%Lu", "Joe@Example.COM", "joe@example.com"),
    ("%Ln", "Joe@Example.COM", "joe"),
    ("%Ud", "joe@example.com", "EXAMPLE.COM"),
    ("/m/%d/%n/Maildir", "joe@example.com", "/m/example.com/joe/Maildir"),
    ("%{domain}/%{username}/%{user}", "joe@example.com", "example.com/joe/joe@example.com"),
    ("100%% %n", "joe", "100% joe"),
    ("%d", "joe", ""),
])
def test_expand(template, user, expected):
    """Dovecot's %u, %n, %d with L/U modifiers and long names expand as documented."""
    assert username.expand(template, user) == expected


def test_expand_escapes_values_only():
    """The escape function applies to substituted values, not to the template."""
    assert username.expand("'%u' %%", "o'neil", escape=lambda v: v.replace("'", "''")) == "'o''neil' %"


def test_normalise_realm_and_format():
    """auth_default_realm is appended to bare names before auth_username_format applies."""
    assert username.normalise("JOE", "%Lu", "Example.com") == "joe@example.com"
    assert username.normalise("Joe@Other.org", "%Lu", "example.com") == "joe@other.org"
    assert username.normalise("Joe@Other.org", "%Ln", "") == "joe"


@pytest.mark.parametrize("bad", ["jo:e", "joe\n", "jo\0e", "joe\r"])
def test_bad_characters_refused(bad):
    """Names with ':' or control characters are refused."""
    with pytest.raises(username.UsernameError):
        username.normalise(bad)
