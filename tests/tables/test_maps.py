"""Search lists and Postfix's lookup orders: addresses (virtual, access), domains, IP addresses."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailstack.config.maincf import Config, Environment, Setting
from mailstack.tables.base import NotInMemoryError, TableTemporaryError
from mailstack.tables.maps import (LocalDomains, Match, address_keys, domain_keys, ip_keys,
                                   localpart_keys, split_localpart)
from mailstack.tables.registry import Tables


def _keys(items):
    return [(item[0], item[1]) for item in items]


def _local(domain):
    return domain in ("example.com",)


# -- key orders --------------------------------------------------------------

def test_virtual_order_with_extension_local_domain():
    """virtual(5): user+foo@domain, user@domain, user+foo, user, @domain (domain local)."""
    keys = address_keys("user+foo@example.com", "virtual", "+", _local)
    assert _keys(keys) == [("user+foo@example.com", False), ("user@example.com", True),
                           ("user+foo", True), ("user", True), ("@example.com", True)]


def test_virtual_order_remote_domain_skips_bare_user():
    """The bare user forms apply only when the domain is local."""
    keys = address_keys("user+foo@remote.example", "virtual", "+", _local)
    assert _keys(keys) == [("user+foo@remote.example", False), ("user@remote.example", True),
                           ("@remote.example", True)]


def test_virtual_order_without_extension():
    """Without a delimiter: user@domain, user (local only), @domain."""
    assert _keys(address_keys("user@example.com", "virtual", "", _local)) == [
        ("user@example.com", False), ("user", True), ("@example.com", True)]
    assert _keys(address_keys("user+foo@example.com", "virtual", "", _local)) == [
        ("user+foo@example.com", False), ("user+foo", True), ("@example.com", True)]


def test_access_order_with_extension():
    """access(5): user+foo@domain, user@domain, domain, parents, user+foo@, user@."""
    keys = address_keys("user+foo@mail.example.com", "access", "+", parent_matches_subdomains=True)
    assert _keys(keys) == [("user+foo@mail.example.com", False), ("user@mail.example.com", True),
                           ("mail.example.com", True), ("example.com", True), ("com", True),
                           ("user+foo@", True), ("user@", True)]


def test_access_order_dot_style_parents():
    """Without smtpd_access_maps in parent_domain_matches_subdomains, parents carry a leading dot."""
    keys = address_keys("user@mail.example.com", "access", "", parent_matches_subdomains=False)
    assert _keys(keys) == [("user@mail.example.com", False), ("mail.example.com", True),
                           (".example.com", True), (".com", True), ("user@", True)]


def test_access_null_sender_key():
    """The null sender's lookup key (<>) is looked up as it is."""
    assert _keys(address_keys("<>", "access", "+")) == [("<>", False)]


def test_localpart_order():
    """aliases(5): user+foo then user."""
    assert _keys(localpart_keys("user+foo", "+")) == [("user+foo", False), ("user", True)]
    assert _keys(localpart_keys("user", "+")) == [("user", False)]


@pytest.mark.parametrize("localpart, delimiters, expected", [
    ("user+foo", "+", ("user", "+foo")),
    ("user+foo+bar", "+", ("user", "+foo+bar")),
    ("user-foo+bar", "+-", ("user", "-foo+bar")),
    ("+foo", "+", ("+foo", None)),
    ("user+", "+", ("user", "+")),
    ("postmaster+x", "+", ("postmaster", "+x")),
    ("PostMaster", "+", ("PostMaster", None)),
    ("MAILER-DAEMON", "-", ("MAILER-DAEMON", None)),
    ("double-bounce", "-", ("double-bounce", None)),
    ("owner-list", "-", ("owner-list", None)),
    ("list-request", "-", ("list-request", None)),
    ("owner-list", "+", ("owner-list", None)),
    ("a-b", "-", ("a", "-b")),
    ("user", "", ("user", None)),
], ids=["plus", "two-ext", "multi-delims", "leading", "empty-ext", "postmaster-ext", "postmaster",
        "mailer-daemon", "double-bounce", "owner", "request", "owner-no-dash", "dash", "no-delimiter"])
def test_split_localpart(localpart, delimiters, expected):
    """recipient_delimiter splitting follows Postfix split_addr()."""
    assert split_localpart(localpart, delimiters) == expected


def test_domain_keys_both_styles():
    """Host names: the name, then parents with or without the leading dot."""
    assert domain_keys("a.b.example.com") == [("a.b.example.com", False), ("b.example.com", True),
                                              ("example.com", True), ("com", True)]
    assert domain_keys("a.b.example.com.", False) == [("a.b.example.com", False), (".b.example.com", True),
                                                      (".example.com", True), (".com", True)]
    assert domain_keys("[192.0.2.1]") == [("[192.0.2.1]", False)]


@pytest.mark.parametrize("address, expected", [
    ("1.2.3.4", ["1.2.3.4", "1.2.3", "1.2", "1"]),
    ("[1.2.3.4]", ["1.2.3.4", "1.2.3", "1.2", "1"]),
    ("::ffff:1.2.3.4", ["1.2.3.4", "1.2.3", "1.2", "1"]),
    ("2001:DB8:0:0:1::5", ["2001:db8::1:0:0:5", "2001:db8::1:0:0", "2001:db8::1:0", "2001:db8::1",
                           "2001:db8:", "2001:db8", "2001"]),
    ("2001:db8:1:2:3:4:5:6", ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5", "2001:db8:1:2:3:4",
                              "2001:db8:1:2:3", "2001:db8:1:2", "2001:db8:1", "2001:db8", "2001"]),
    ("unknown", ["unknown"]),
], ids=["v4", "bracketed", "mapped", "v6-compressed", "v6-full", "not-ip"])
def test_ip_keys(address, expected):
    """IP addresses: the address, then shorter prefixes by dropping the last .octet or :part."""
    keys = ip_keys(address)
    assert [k for k, _ in keys] == expected
    assert [p for _, p in keys] == [False] + [True] * (len(expected) - 1)


# -- searching -----------------------------------------------------------------

@pytest.fixture
def tables(tmp_path):
    made = Tables(check_interval=0, base_directory=str(tmp_path))
    yield made
    made.close()


def test_keys_outer_tables_inner(tables):
    """Each key is tried in every table before the next key (virtual(5))."""
    maps = tables.maps(["inline:{ @example.com=catchall }", "inline:{ user@example.com=exact }"], "virtual_alias_maps")
    match = maps.find_address_now("user@example.com", "virtual", is_local=_local)
    assert match == Match("exact", "user@example.com", "inline:{ user@example.com=exact }")


def test_virtual_precedence(tables):
    """user@domain beats user beats @domain; the extension is reported when not matched."""
    maps = tables.maps(["inline:{ user@example.com=a, user=b, @example.com=c, other=d }"])
    assert maps.find_address_now("user+x@example.com", delimiters="+", is_local=_local) == Match(
        "a", "user@example.com", maps.tables[0].spec, "+x")
    assert maps.find_address_now("other@example.com", is_local=_local).value == "d"
    assert maps.find_address_now("other@remote.example", is_local=_local) is None
    assert maps.find_address_now("nobody@example.com", is_local=_local) == Match(
        "c", "@example.com", maps.tables[0].spec, None)


def test_extension_reported_only_when_dropped(tables):
    """A match on the full address carries no extension to propagate."""
    maps = tables.maps(["inline:{ user+x@example.com=full, @example.com=domain }"])
    assert maps.find_address_now("user+x@example.com", delimiters="+").extension is None
    assert maps.find_address_now("user+x@example.com", delimiters="+").value == "full"
    assert maps.find_address_now("user+y@example.com", delimiters="+").extension is None


def test_pattern_tables_see_only_the_full_key(tables):
    """regexp tables are not asked for partial keys (user@, @domain, parents)."""
    maps = tables.maps(["regexp:{ {/^@example\\.com$/ partial}, {/^user@/ full} }"])
    assert maps.find_address_now("user@example.com").value == "full"
    assert maps.find_address_now("bob@example.com") is None
    cidr = tables.maps(["cidr:{ {1.2.3.0/24 net} }"])
    assert cidr.find_ip_now("1.2.3.4").key == "1.2.3.4"


def test_access_address_search(tables):
    """An access table finds sender domains, parent domains and user@ forms in order."""
    maps = tables.maps(["inline:{ example.com=REJECT, spammer@=DISCARD, friend@mail.example.com=OK }"])
    assert maps.find_address_now("friend@mail.example.com", "access").value == "OK"
    assert maps.find_address_now("x@mail.example.com", "access").value == "REJECT"
    assert maps.find_address_now("spammer@other.example", "access").value == "DISCARD"
    assert maps.find_address_now("x@other.example", "access") is None
    dot = tables.maps(["inline:{ .example.com=sub, example.com=exact }"])
    assert dot.find_address_now("x@mail.example.com", "access", parent_matches_subdomains=False).value == "sub"
    assert dot.find_address_now("x@example.com", "access", parent_matches_subdomains=False).value == "exact"


def test_dunno_stops_the_search(tables):
    """A value (even DUNNO) ends the search: the caller sees it, parents are not tried."""
    maps = tables.maps(["inline:{ 1.2.3.4=DUNNO, 1.2.3=REJECT }"])
    assert maps.find_ip_now("1.2.3.4") == Match("DUNNO", "1.2.3.4", maps.tables[0].spec)
    assert maps.find_ip_now("1.2.3.5").value == "REJECT"


def test_host_and_ip_access(tables):
    """The access(5) example: 1.2.3.4 OK but the rest of 1.2.3.0/24 REJECT; host parents."""
    maps = tables.maps(["inline:{ 1.2.3=REJECT, 1.2.3.4=OK, example.com=OK, 2001:db8=v6 }"])
    assert maps.find_ip_now("1.2.3.4").value == "OK"
    assert maps.find_ip_now("1.2.3.99").value == "REJECT"
    assert maps.find_ip_now("1.2.4.1") is None
    assert maps.find_ip_now("2001:db8::7").value == "v6"
    assert maps.find_domain_now("host.example.com").value == "OK"
    assert maps.find_domain_now("host.example.com", parent_matches_subdomains=False) is None


def test_error_stops_the_search(tables):
    """A failing table ends the search with TableTemporaryError; later tables don't answer."""
    maps = tables.maps(["fail:down", "static:OK"])
    with pytest.raises(TableTemporaryError):
        maps.lookup_now("x")
    failures = []
    maps.find_address("a@b").addErrback(failures.append)
    assert failures[0].check(TableTemporaryError)
    found = tables.maps(["static:OK", "fail:down"])
    assert found.lookup_now("x") == "OK"


def test_in_memory_lists_fire_at_once(tables):
    """The Deferred of an in-memory search has already fired."""
    maps = tables.maps(["inline:{ a=b }"])
    assert maps.synchronous
    d = maps.lookup("A")
    assert d.called and d.result == "b"


@pytest_twisted.inlineCallbacks
def test_search_across_io_tables(tmp_path):
    """A list with a thread-pool table searches asynchronously in the same order."""
    cf = tmp_path / "t.cf"
    cf.write_text("dbpath = %s\nquery = SELECT 'sql:' || '%%s' WHERE '%%s' = 'user@example.com'\n"
                  % (tmp_path / "db.sqlite"))
    import sqlite3
    sqlite3.connect(str(tmp_path / "db.sqlite")).close()
    tables = Tables(reactor=reactor, check_interval=0)
    maps = tables.maps(["inline:{ @example.com=catchall }", "sqlite:%s" % cf])
    assert not maps.synchronous
    with pytest.raises(NotInMemoryError):
        maps.lookup_now("x")
    match = yield maps.find_address("user@example.com")
    assert match.value == "sql:user@example.com"
    match = yield maps.find_address("other@example.com")
    assert match.value == "catchall"
    tables.close()


def test_localpart_search(tables):
    """Alias lookups: user+ext, then user with the extension reported."""
    maps = tables.maps(["inline:{ bob=robert }"])
    assert maps.find_localpart_now("bob+news", "+") == Match("robert", "bob", maps.tables[0].spec, "+news")


# -- local domains ---------------------------------------------------------------

def _config(**settings):
    return Config([Setting(k, v) for k, v in settings.items()],
                  Environment(hostname="mail.example.com", config_directory="/tmp")).validate()


def test_local_domains():
    """myorigin, mydestination (with .domain and !negation) and own address literals are local."""
    config = _config(mydestination="$myhostname, localhost, !bad.example.org, .example.org",
                     myorigin="example.com", inet_interfaces="127.0.0.1", proxy_interfaces="192.0.2.10")
    local = LocalDomains(config)
    assert local("example.com") and local("MAIL.example.com.") and local("localhost")
    assert local("sub.example.org") and not local("bad.example.org") and not local("example.org")
    assert local("[127.0.0.1]") and local("[192.0.2.10]") and not local("[192.0.2.11]")
    assert not local("remote.example")


def test_local_domains_parent_matching_and_tables(tmp_path):
    """mydestination in parent_domain_matches_subdomains matches subdomains; tables are consulted."""
    config = _config(mydestination="example.net, inline:{ table.example=yes }",
                     parent_domain_matches_subdomains="mydestination")
    local = LocalDomains(config, Tables())
    assert local("deep.sub.example.net") and local("table.example")
    assert not LocalDomains(_config(mydestination="example.net"))("sub.example.net")
    names = tmp_path / "local_domains"
    names.write_text("# more local domains\nfile.example, other.example\n")
    from_file = LocalDomains(_config(mydestination="localhost %s" % names))
    assert from_file("file.example") and from_file("other.example") and not from_file("x.example")


def test_empty_local_part_has_no_user_keys():
    """An address with an empty local part (@domain) is not looked up as '' or '@'."""
    assert _keys(address_keys("@example.com", "virtual", "+", _local)) == [("@example.com", False)]
    assert _keys(address_keys("@example.com", "access", "+")) == [
        ("@example.com", False), ("example.com", True), ("com", True)]
