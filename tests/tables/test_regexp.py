"""regexp and pcre tables: Postfix syntax, flags, if/endif, $n, POSIX and PCRE translation."""

import pytest

from mailstack.tables.base import TableConfigError
from mailstack.tables.registry import TableContext, open_table
from mailstack.tables.regexp import translate_pcre, translate_posix


def _table(tmp_path, text, kind="regexp"):
    path = tmp_path / "rules"
    path.write_text(text)
    return open_table("%s:%s" % (kind, path), TableContext(check_interval=0))


def test_first_match_wins_and_no_case_folding_of_result(tmp_path):
    """Rules apply in file order; the result is returned as written."""
    table = _table(tmp_path, "/^postmaster@/ OK\n/@example\\.com$/ REJECT Go Away\n/.*/ DUNNO\n")
    assert table.lookup_now("postmaster@example.com") == "OK"
    assert table.lookup_now("bob@example.com") == "REJECT Go Away"
    assert table.lookup_now("x") == "DUNNO"


def test_default_case_insensitive_and_i_flag_toggles(tmp_path):
    """Patterns ignore case by default; the i flag makes them case-sensitive."""
    table = _table(tmp_path, "/^Subject: Money/i CASE\n/^subject: money/ NOCASE\n")
    assert table.lookup_now("subject: money now") == "NOCASE"
    assert table.lookup_now("Subject: Money now") == "CASE"
    assert table.lookup_now("SUBJECT: MONEY") == "NOCASE"


def test_negated_rule(tmp_path):
    """!/pattern/ gives its result when the key does not match."""
    table = _table(tmp_path, "!/^[a-z]+@example\\.com$/ 550 not ours\n")
    assert table.lookup_now("bob@example.org") == "550 not ours"
    assert table.lookup_now("bob@example.com") is None


def test_if_endif_nesting(tmp_path):
    """if/endif blocks nest; a failed condition skips to its endif."""
    table = _table(tmp_path, (
        "if /@example\\.com$/\n"
        "if !/^owner-/\n"
        "/^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead\n"
        "endif\n"
        "/^owner-/ owner\n"
        "endif\n"
        "/-outgoing@/ elsewhere\n"))
    assert table.lookup_now("list-outgoing@example.com") == "550 Use list@example.com instead"
    assert table.lookup_now("owner-list-outgoing@example.com") == "owner"
    assert table.lookup_now("list-outgoing@example.org") == "elsewhere"


@pytest.mark.parametrize("result, key, expected", [
    ("r=$1,${2},$(1)x$$", "ac", "r=a,,ax$"),
    ("$2.$1", "abc", "b.a"),
    ("${1}${2}", "abc", "ab"),
], ids=["all-forms", "dot-after", "adjacent"])
def test_substitution(tmp_path, result, key, expected):
    """$n, ${n}, $(n) and $$ in results; an unmatched group is empty (as Postfix)."""
    table = _table(tmp_path, "/^(a)(b)?c$/ %s\n" % result)
    assert table.lookup_now(key) == expected


def test_empty_substituted_result_is_not_found(tmp_path):
    """A result that substitutes to the empty string counts as not found, as in Postfix."""
    table = _table(tmp_path, "/^(x?)y$/ $1\n")
    assert table.lookup_now("y") is None
    assert table.lookup_now("xy") == "x"


def test_other_delimiters_and_escaped_delimiter(tmp_path):
    """Any non-alphanumeric delimiter works, and a backslash escapes it."""
    table = _table(tmp_path, "%^a/b%\tslash\n/^c\\/d$/ escaped\n")
    assert table.lookup_now("a/b") == "slash"
    assert table.lookup_now("c/d") == "escaped"


def test_continuation_line_joins_result(tmp_path):
    """A line starting with white space continues the rule."""
    table = _table(tmp_path, "/^a$/ first part\n  second part\n")
    assert table.lookup_now("a") == "first part  second part"


@pytest.mark.parametrize("text, reason", [
    ("/a/q r\n", 'unknown regexp option "q"'),
    ("/(a)/ $2\n", 'out of range replacement index "2"'),
    ("!/(a)/ $1\n", "negative match replacement"),
    ("/a/\n", "no result"),
    ("/a/ $1x\n", "bad replacement syntax"),
    ("if /a/\n/b/ c\n", "if has no matching endif"),
    ("endif\n", "endif without matching if"),
    ("/a( b\n", "no closing regexp delimiter|bad pattern"),
    ("/a(/ b\n", "bad pattern"),
    ("a b\n", "bad pattern delimiter"),
], ids=["flag", "range", "negated", "no-result", "syntax", "no-endif", "endif", "unclosed", "bad-re", "delim"])
def test_errors_name_file_and_line(tmp_path, text, reason):
    """Rules Postfix would skip stop the table with file:line: reason."""
    with pytest.raises(TableConfigError, match=r"rules:\d+: .*(%s)" % reason):
        _table(tmp_path, "/ok/ fine\n" + text)


def test_posix_semantics(tmp_path):
    """POSIX classes, literal backslash in brackets, word edges, $ only at the very end."""
    table = _table(tmp_path, (
        "/^[[:digit:]]+$/ digits\n"
        "/^[\\]+$/ backslashes\n"
        "/\\<cat\\>/ word\n"
        "/^a.b$/ dot\n"))
    assert table.lookup_now("2024") == "digits"
    assert table.lookup_now("2024\n") is None
    assert table.lookup_now("\\\\") == "backslashes"
    assert table.lookup_now("a cat b") == "word"
    assert table.lookup_now("concat") is None
    assert table.lookup_now("a\nb") == "dot"  # no REG_NEWLINE: . matches a newline


def test_m_flag_multiline(tmp_path):
    """The m flag makes ^ and $ match at newlines and . stop at them."""
    table = _table(tmp_path, "/^b$/m multi\n/^b$/ single\n")
    assert table.lookup_now("a\nb\nc") == "multi"
    assert table.lookup_now("b") == "multi"


def test_x_flag_selects_basic_syntax(tmp_path):
    """Toggling x gives POSIX basic syntax: \\( \\) group, + is literal."""
    table = _table(tmp_path, "/^\\(a+\\)@/x $1\n")
    assert table.lookup_now("a+@x") == "a+"
    assert table.lookup_now("aa@x") is None


@pytest.mark.parametrize("posix, python", [
    ("a|b", "a|b"),
    ("[^]a-]", "[^\\]a\\-]"),
    ("[a-z]", "[a-z]"),
    ("x$", "x\\Z"),
    ("[[:space:]]", "[ \\t\\n\\r\\f\\v]"),
    ("[[]", "[\\[]"),
], ids=["alt", "close-bracket-first", "range", "dollar", "space-class", "open-bracket"])
def test_translate_posix(posix, python):
    """POSIX ERE text becomes the equivalent Python pattern."""
    assert translate_posix(posix) == python


def test_posix_rejects_perl_groups():
    """(?...) is not POSIX; pcre: is the table for it."""
    with pytest.raises(ValueError, match="pcre"):
        translate_posix("(?i)a")


def test_pcre_perl_isms(tmp_path):
    """pcre: named groups, \\k, \\Q..\\E, \\x{..}, \\z and \\h work in Python."""
    table = _table(tmp_path, (
        "/^(?<user>[^@]+)@\\k<user>\\.example$/ same $1\n"
        "/^\\Q1+1=2\\E$/ quoted\n"
        "/^\\x{41}\\hB\\z/ hex\n"
        "/^(\\w+)\\s+\\1$/ repeated\n"), kind="pcre")
    assert table.lookup_now("bob@bob.example") == "same bob"
    assert table.lookup_now("1+1=2") == "quoted"
    assert table.lookup_now("a b") == "hex"
    assert table.lookup_now("a b\n") is None
    assert table.lookup_now("hey hey") == "repeated"


def test_pcre_flags(tmp_path):
    """pcre flags: s (dotall), x (extended), U (ungreedy), A (anchored), E (dollar end only)."""
    table = _table(tmp_path, (
        "/^a.b$/s dotall\n"
        "/^ c \\d+ $/x extended\n"
        "/^<(.+)>/U $1\n"
        "/y/A anchored\n"
        "/z$/E endonly\n"), kind="pcre")
    assert table.lookup_now("a\nb") == "dotall"
    assert table.lookup_now("c42") == "extended"
    assert table.lookup_now("<a><b>") == "a"
    assert table.lookup_now("xy") is None and table.lookup_now("yx") == "anchored"
    assert table.lookup_now("z\n") is None and table.lookup_now("z") == "endonly"


def test_pcre_default_dollar_allows_final_newline(tmp_path):
    """Without E, PCRE's $ also matches before a final newline, like Perl."""
    table = _table(tmp_path, "/z$/ end\n", kind="pcre")
    assert table.lookup_now("z\n") == "end"


@pytest.mark.parametrize("pattern", ["a\\Gb", "(?R)", "\\p{Lu}", "a\\Kb", "(?|a)"],
                         ids=["G", "recursion", "property", "K", "branch-reset"])
def test_pcre_unsupported_features_are_errors(tmp_path, pattern):
    """PCRE features Python's re lacks are refused with file:line."""
    with pytest.raises(TableConfigError, match="rules:1: bad pattern"):
        _table(tmp_path, "/%s/ x\n" % pattern, kind="pcre")


@pytest.mark.parametrize("pcre, python", [
    ("a\\Z", "a(?=\\n?\\Z)"),
    ("(?'n'x)", "(?P<n>x)"),
    ("(?<=a)b", "(?<=a)b"),
    ("\\g{1}", "(?:\\1)"),
    ("[[:alpha:]_]", "[a-zA-Z_]"),
], ids=["Z", "quoted-name", "lookbehind", "g-ref", "posix-class"])
def test_translate_pcre(pcre, python):
    """PCRE text becomes the equivalent Python pattern."""
    assert translate_pcre(pcre) == python


def test_inline_rules():
    """regexp:{ {rule}, {rule} } works without a file."""
    table = open_table("regexp:{ {/^a/ first}, { /b$/ second one } }", TableContext())
    assert table.lookup_now("abc") == "first"
    assert table.lookup_now("xb") == "second one"
    assert table.lookup_now("x") is None


def test_regexp_keys_not_folded(tmp_path):
    """The key reaches the pattern with its case, so $1 keeps it."""
    table = _table(tmp_path, "/^(.*)@/ $1\n")
    assert table.lookup_now("MixedCase@x") == "MixedCase"
