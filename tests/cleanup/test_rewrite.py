"""Address rewriting, rule by rule and table by table (trivial-rewrite, canonical, masquerade, virtual, bcc)."""

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from mailstack.cleanup.rewrite import AddressRewriter
from mailstack.common.reply import TemporaryReject
from mailstack.config import maincf
from mailstack.tables.registry import Tables

BASE = {"myhostname": "mail.example.test", "mydomain": "example.test", "myorigin": "example.test",
        "mydestination": "mail.example.test, localhost.example.test, localhost"}


def rewriter(**overrides):
    settings = [maincf.Setting(k, v, "test") for k, v in {**BASE, **overrides}.items()]
    config = maincf.Config(settings, maincf.Environment(hostname="mail.example.test")).validate()
    return AddressRewriter(config, Tables(reactor=Clock()))


@pytest.mark.parametrize("given,expected,overrides", [
    ("joe", "joe@example.test", {}),
    ("joe", "joe", {"append_at_myorigin": "no"}),
    ("joe@host", "joe@host.example.test", {}),
    ("joe@host", "joe@host", {"append_dot_mydomain": "no"}),
    ("joe@example.org.", "joe@example.org", {}),
    ("site.example!joe", "joe@site.example", {}),
    ("site!joe", "site!joe@example.test", {"swap_bangpath": "no"}),
    ("joe%remote.example", "joe@remote.example", {}),
    ("joe%remote.example@mail.example.test", "joe@remote.example", {}),
    ("joe%remote.example@other.example", "joe%remote.example@other.example", {}),
    ("joe%remote.example@mail.example.test", "joe%remote.example@mail.example.test", {"allow_percent_hack": "no"}),
    ("joe@[192.0.2.1]", "joe@[192.0.2.1]", {}),
    ("", "", {}),
], ids=["append-myorigin", "no-append-myorigin", "append-dot-mydomain", "no-append-dot-mydomain", "trailing-dot",
        "bangpath", "no-bangpath", "percent", "percent-local", "percent-remote", "no-percent", "literal", "null"])
def test_trivial_rewrite(given, expected, overrides):
    """trivial-rewrite turns every address form into user@fully.qualified.domain as Postfix does."""
    assert rewriter(**overrides).trivial(given) == expected


@pytest_twisted.ensureDeferred
async def test_canonical_maps_order_and_domain_move():
    """sender_canonical_maps wins over canonical_maps; @domain @other keeps the user; extensions propagate."""
    r = rewriter(recipient_delimiter="+",
                 sender_canonical_maps="inline:{joe@example.test=joseph@example.test}",
                 canonical_maps="inline:{@old.example=@new.example, joseph@example.test=wrong@example.test}")
    assert await r.canonical("joe@example.test", "sender") == "wrong@example.test"
    assert await r.canonical("ann+tag@old.example", "recipient") == "ann+tag@new.example"
    assert await r.canonical("nobody@else.example", "recipient") == "nobody@else.example"


@pytest_twisted.ensureDeferred
async def test_recipient_canonical_and_classes():
    """recipient_canonical_maps applies to recipients only; canonical_classes can switch senders off."""
    r = rewriter(recipient_canonical_maps="inline:{a@example.test=b@example.test}",
                 canonical_maps="inline:{s@example.test=t@example.test}", canonical_classes="envelope_recipient")
    assert await r.canonical("a@example.test", "recipient") == "b@example.test"
    assert await r.canonical("a@example.test", "sender") == "a@example.test"
    assert await r.canonical("s@example.test", "sender") == "s@example.test"


@pytest.mark.parametrize("address,expected", [
    ("joe@host.sub.example.test", "joe@example.test"),
    ("joe@example.test", "joe@example.test"),
    ("root@host.example.test", "root@host.example.test"),
    ("joe@keep.example.test", "joe@keep.example.test"),
    ("joe@other.example", "joe@other.example"),
], ids=["subdomain", "domain-itself", "exception", "excluded", "foreign"])
def test_masquerade(address, expected):
    """masquerade_domains strips subdomains, honouring !exclusions and masquerade_exceptions."""
    r = rewriter(masquerade_domains="!keep.example.test, example.test", masquerade_exceptions="root")
    assert r.masquerade(address, "envelope_sender") == expected
    assert r.masquerade(address, "envelope_recipient") == address


VIRTUAL = """\
# virtual(5) source
list@v.example      a@v.example, b@v.example
a@v.example         ann@real.example
b@v.example         b@v.example, bob@real.example
loop1@v.example     loop2@v.example
loop2@v.example     loop1@v.example
@catch.example      all@real.example
@move.example       @moved.example
big@v.example       m0@real.example, m1@real.example, m2@real.example, m3@real.example
"""


@pytest_twisted.ensureDeferred
async def test_virtual_alias_expansion_is_recursive_and_loop_safe(tmp_path):
    """virtual_alias_maps expand recursively; self-references stay; loops end; @domain catch-alls apply."""
    (tmp_path / "virtual").write_text(VIRTUAL)
    r = rewriter(virtual_alias_maps="texthash:%s" % (tmp_path / "virtual"))
    assert await r.virtual("list@v.example") == ["ann@real.example", "b@v.example", "bob@real.example"]
    assert await r.virtual("anyone@catch.example") == ["all@real.example"]
    assert await r.virtual("sam@move.example") == ["sam@moved.example"]
    assert await r.virtual("loop1@v.example") == ["loop1@v.example"]
    assert await r.virtual("plain@real.example") == ["plain@real.example"]


@pytest_twisted.ensureDeferred
async def test_virtual_alias_limits_defer(tmp_path):
    """Past virtual_alias_recursion_limit or virtual_alias_expansion_limit the message is deferred (451 4.3.0)."""
    chain = "".join("c%d@v.example c%d@v.example\n" % (i, i + 1) for i in range(10))
    (tmp_path / "chain").write_text(chain)
    r = rewriter(virtual_alias_maps="texthash:%s" % (tmp_path / "chain"), virtual_alias_recursion_limit="5")
    with pytest.raises(TemporaryReject) as info:
        await r.virtual("c0@v.example")
    assert info.value.reply() == "451 4.3.0 Error: virtual alias recursion limit exceeded"
    (tmp_path / "virtual").write_text(VIRTUAL)
    r = rewriter(virtual_alias_maps="texthash:%s" % (tmp_path / "virtual"), virtual_alias_expansion_limit="3")
    with pytest.raises(TemporaryReject):
        await r.virtual("big@v.example")


@pytest_twisted.ensureDeferred
async def test_lookup_failure_is_temporary():
    """A table that cannot answer makes rewriting fail with 451 4.3.0, never 'not found'."""
    r = rewriter(virtual_alias_maps="fail:down")
    with pytest.raises(TemporaryReject) as info:
        await r.virtual("a@example.test")
    assert info.value.code == 451


@pytest_twisted.ensureDeferred
async def test_bcc_sources():
    """always_bcc, sender_bcc_maps and recipient_bcc_maps each add their copy."""
    r = rewriter(always_bcc="archive", sender_bcc_maps="inline:{boss@example.test=audit@example.test}",
                 recipient_bcc_maps="inline:{@sales.example=sales-copy@example.test}")
    assert await r.bcc("boss@example.test", ["x@sales.example", "y@other.example"]) == [
        "archive@example.test", "audit@example.test", "sales-copy@example.test"]
    assert await r.bcc("", ["y@other.example"]) == ["archive@example.test"]
