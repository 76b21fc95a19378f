# -*- test-case-name: tests.tables.test_regexp -*-
"""``regexp`` and ``pcre`` tables: ordered patterns, first match wins.

File syntax (Postfix ``regexp_table(5)``, ``pcre_table(5)``)::

    /pattern/flags result       result when the key matches
    !/pattern/flags result      result when it does not ($n not allowed)
    if /pattern/flags           the rules up to the matching endif apply
    if !/pattern/flags          only when the key (does not) match; nests
    endif

The delimiter may be any character but a letter, digit or white space.
The result may use ``$1``, ``${1}`` or ``$(1)`` for the text a group
matched and ``$$`` for a dollar sign.  Keys are not case-folded: patterns
are case-insensitive by default instead.  The whole key is matched (no
address or domain splitting; see :mod:`mailstack.tables.maps`).  Rules can
also be given inline: ``regexp:{ {/^a/ OK}, {/b/ REJECT} }``.

``regexp`` patterns are POSIX extended regular expressions, translated to
Python's ``re``: bracket expressions keep backslashes literal,
``[[:alpha:]]`` classes, ``\\<``/``\\>`` word edges, and ``$`` matches only
at the very end (``re`` would also match before a final newline).  Flags
toggle a default: ``i`` case-insensitive (on), ``x`` extended syntax (on;
off means POSIX basic syntax, ``\\(...\\)`` groups), ``m`` multi-line (off;
without it ``.`` also matches a newline, as POSIX without REG_NEWLINE).

``pcre`` patterns are Perl-compatible, translated where Python's ``re``
differs: ``\\z`` and ``\\Z``, ``\\Q...\\E``, ``\\h``, ``\\x{HHHH}``, ``\\e``,
``(?<name>...)`` and ``\\k<name>``, ``\\g{N}``, POSIX classes inside
brackets.  Features ``re`` lacks (recursion, ``\\G``, ``\\K``, ``\\p{...}``,
branch reset) are errors naming the line.  Flags: ``i`` (on), ``m``, ``s``,
``x``, ``A`` (anchored), ``E`` (``$`` only at the end), ``U`` (ungreedy),
``X`` (accepted: ``re`` already rejects unknown escapes).

Where Postfix warns and skips a bad rule (unknown flag, ``$n`` out of
range, ``$n`` in a negated rule, a missing result, an ``if`` without
``endif``), this table refuses the whole file with ``file:line: reason``,
because silently dropping a rule changes what the table answers.
"""

import re

from twisted.logger import Logger

from mailstack.tables.base import FileTable, TableConfigError, logical_lines

log = Logger(namespace="mailstack.tables")

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "xdigit": "0-9A-Fa-f",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "print": "\\x20-\\x7e", "graph": "\\x21-\\x7e", "cntrl": "\\x00-\\x1f\\x7f", "word": "\\w",
}


def _class_char(char):
    """Escape one literal character for use inside a Python character class."""
    return "\\" + char if char in "\\]^-[&~|" else char


def _bracket(pattern, i, posix):
    """Translate the bracket expression starting at ``pattern[i] == '['``.

    Returns:
        (python_text, index after the closing ``]``).
    """
    n = len(pattern)
    j = i + 1
    out = ["["]
    if j < n and pattern[j] == "^":
        out.append("^")
        j += 1
    first = True
    while True:
        if j >= n:
            raise ValueError("unmatched [")
        char = pattern[j]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        first = False
        if char == "[" and j + 1 < n and pattern[j + 1] in ":=.":
            kind = pattern[j + 1]
            end = pattern.find(kind + "]", j + 2)
            if end < 0:
                raise ValueError("unterminated [%s" % kind)
            name = pattern[j + 2:end]
            if kind == ":":
                if name not in _POSIX_CLASSES:
                    raise ValueError("unknown character class [:%s:]" % name)
                out.append(_POSIX_CLASSES[name])
            else:
                out.append("".join(_class_char(c) for c in name))
            j = end + 2
            continue
        if char == "\\" and not posix:
            if j + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = pattern[j + 1]
            if nxt in "Qh":
                raise ValueError("\\%s inside a character class is not supported" % nxt)
            out.append(pattern[j:j + 2])
            j += 2
            continue
        if char == "-" and len(out) > 1 and out[-1] not in ("[", "^") and j + 1 < n and pattern[j + 1] != "]":
            out.append("-")
            j += 1
            continue
        out.append(_class_char(char))
        j += 1


def translate_posix(pattern, extended=True, multiline=False):
    """Translate a POSIX regular expression (extended, or basic) to Python ``re`` syntax.

    Raises:
        ValueError: for a construct that has no translation.
    """
    out = []
    i, n = 0, len(pattern)
    dollar = "$" if multiline else r"\Z"
    while i < n:
        char = pattern[i]
        if char == "[":
            text, i = _bracket(pattern, i, posix=True)
            out.append(text)
            continue
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = pattern[i + 1]
            i += 2
            if nxt == "<":
                out.append(r"\b(?=\w)")
            elif nxt == ">":
                out.append(r"\b(?<=\w)")
            elif nxt == "`":
                out.append(r"\A")
            elif nxt == "'":
                out.append(r"\Z")
            elif nxt in "bBwWsS123456789":
                out.append("\\" + nxt)
            elif not extended and nxt in "(){}|+?":
                out.append(nxt)
            else:
                out.append(re.escape(nxt))
            continue
        i += 1
        if extended:
            if char == "(" and i < n and pattern[i] == "?":
                raise ValueError("'(?' is not POSIX syntax (use pcre:)")
            if char == "$":
                out.append(dollar)
            else:
                out.append(char)
            continue
        # Basic syntax: ( ) { } | + ? are ordinary; * is literal at the start.
        if char in "(){}|+?":
            out.append("\\" + char)
        elif char == "*" and (not out or out[-1] in ("(", "^")):
            out.append(r"\*")
        elif char == "^" and out and out[-1] not in ("(", "|"):
            out.append(r"\^")
        elif char == "$" and i < n and not pattern.startswith("\\)", i) and not pattern.startswith("\\|", i):
            out.append(r"\$")
        elif char == "$":
            out.append(dollar)
        else:
            out.append(char)
    return "".join(out)


_PCRE_UNSUPPORTED = {"G": "\\G", "K": "\\K", "p": "\\p{...}", "P": "\\P{...}", "X": "\\X", "C": "\\C"}
_QUANT_END = re.compile(r"\{\d*(?:,\d*)?\}")


def translate_pcre(pattern, dollar_endonly=False, ungreedy=False):
    """Translate a Perl-compatible regular expression to Python ``re`` syntax.

    Raises:
        ValueError: for a PCRE feature Python's ``re`` does not have.
    """
    out = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "[":
            text, i = _bracket(pattern, i, posix=False)
            out.append(text)
            continue
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = pattern[i + 1]
            i += 2
            if nxt == "z":
                out.append(r"\Z")
            elif nxt == "Z":
                out.append(r"(?=\n?\Z)")
            elif nxt == "Q":
                end = pattern.find("\\E", i)
                end = n if end < 0 else end
                out.append(re.escape(pattern[i:end]))
                i = end + 2
            elif nxt == "E":
                pass
            elif nxt == "h":
                out.append(r"[ \t]")
            elif nxt == "H":
                out.append(r"[^ \t]")
            elif nxt == "R":
                out.append(r"(?:\r\n|\n|\r)")
            elif nxt == "e":
                out.append(r"\x1b")
            elif nxt == "x" and i < n and pattern[i] == "{":
                end = pattern.index("}", i)
                out.append(re.escape(chr(int(pattern[i + 1:end], 16))))
                i = end + 1
            elif nxt == "g":
                match = re.match(r"\{?(-?\d+)\}?", pattern[i:])
                if not match or match.group(1).startswith("-"):
                    raise ValueError("unsupported \\g reference")
                out.append("(?:\\%s)" % match.group(1))
                i += match.end()
            elif nxt == "k":
                match = re.match(r"[<{'](\w+)[>}']", pattern[i:])
                if not match:
                    raise ValueError("bad \\k reference")
                out.append("(?P=%s)" % match.group(1))
                i += match.end()
            elif nxt in _PCRE_UNSUPPORTED:
                raise ValueError("%s is not supported by Python's re" % _PCRE_UNSUPPORTED[nxt])
            else:
                out.append("\\" + nxt)
            continue
        if char == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2:]
            named = re.match(r"<(\w+)>|'(\w+)'", rest)
            if named and not rest.startswith(("<=", "<!")):
                out.append("(?P<%s>" % (named.group(1) or named.group(2)))
                i += 2 + named.end()
                continue
            if re.match(r"R\)|\d+\)|[+-]\d+\)|&|P>|\|", rest):
                raise ValueError("recursion and branch reset are not supported by Python's re")
            out.append("(?")
            i += 2
            continue
        if char == "$" and dollar_endonly:
            out.append(r"\Z")
            i += 1
            continue
        if ungreedy and char in "*+?{":
            quant = _QUANT_END.match(pattern, i) if char == "{" else None
            if char != "{" or quant:
                end = quant.end() if quant else i + 1
                out.append(pattern[i:end])
                i = end
                if i < n and pattern[i] == "?":
                    i += 1           # lazy becomes greedy
                elif i < n and pattern[i] == "+":
                    out.append("+")  # possessive stays possessive
                    i += 1
                else:
                    out.append("?")  # greedy becomes lazy
                continue
        out.append(char)
        i += 1
    return "".join(out)


class _Rule:
    __slots__ = ("lineno", "regex", "negate", "result", "end", "search")

    def __init__(self, lineno, regex, negate, result, end=None, anchored=False):
        self.lineno = lineno
        self.regex = regex
        self.negate = negate
        self.result = result  # None for an "if"; else a list of str and int (group numbers)
        self.end = end        # for an "if": index of the rule after the matching endif
        self.search = regex.match if anchored else regex.search


_SUBST = re.compile(r"\$(?:\{([^}]*)\}|\(([^)]*)\)|([A-Za-z0-9_]+)|(\$))")


def parse_result(text, groups, negate, where):
    """Parse a result with ``$n`` substitutions into a list of str and group numbers.

    Raises:
        TableConfigError: for a bad or out-of-range ``$n``, or ``$n`` in a negated rule.
    """
    parts, pos = [], 0
    for match in _SUBST.finditer(text):
        parts.append(text[pos:match.start()])
        pos = match.end()
        if match.group(4):
            parts.append("$")
            continue
        name = match.group(1) or match.group(2) or match.group(3) or ""
        if not name.isdigit():
            raise TableConfigError("%s: bad replacement syntax $%s (use ${n} for group n)" % (where, name))
        number = int(name)
        if negate:
            raise TableConfigError("%s: $number found in negative match replacement text" % where)
        if number < 1 or number > groups:
            raise TableConfigError('%s: out of range replacement index "%d"' % (where, number))
        parts.append(number)
    parts.append(text[pos:])
    return [p for p in parts if p != ""]


class RegexpTable(FileTable):
    """``regexp:/file``: POSIX regular expressions, first match wins."""

    type_name = "regexp"
    fixed = False
    fold = False
    inline_ok = True
    FLAGS = "imx"

    def _compile(self, body, flags, where):
        ignorecase, extended, multiline = True, True, False
        for flag in flags:
            if flag == "i":
                ignorecase = not ignorecase
            elif flag == "x":
                extended = not extended
            elif flag == "m":
                multiline = not multiline
            else:
                raise TableConfigError('%s: unknown regexp option "%s"' % (where, flag))
        options = (re.IGNORECASE if ignorecase else 0) | (re.MULTILINE if multiline else re.DOTALL)
        return re.compile(translate_posix(body, extended, multiline), options), False

    def _load(self, path):
        rules, stack = [], []
        for lineno, line in logical_lines(self._source_text(), self.source):
            where = "%s:%d" % (self.source, lineno)
            word = re.match(r"(?i)(if|endif)(?![A-Za-z0-9])", line)
            if word and word.group(1).lower() == "endif":
                if not stack:
                    raise TableConfigError("%s: endif without matching if" % where)
                if line[5:].strip():
                    log.warn("{where}: ignoring extra text after endif", where=where)
                rules[stack.pop()].end = len(rules)
                continue
            text = line[word.end():].lstrip() if word else line
            negate = text.startswith("!")
            if negate:
                text = text[1:].lstrip()
            regex, anchored, rest = self._pattern(text, where)
            if word:
                if rest:
                    log.warn("{where}: ignoring extra text after if: {text}", where=where, text=rest)
                stack.append(len(rules))
                rules.append(_Rule(lineno, regex, negate, None, anchored=anchored))
                continue
            if not rest:
                raise TableConfigError("%s: no result after the pattern" % where)
            result = parse_result(rest, regex.groups, negate, where)
            rules.append(_Rule(lineno, regex, negate, result, anchored=anchored))
        if stack:
            raise TableConfigError("%s:%d: if has no matching endif" % (self.source, rules[stack[-1]].lineno))
        return rules

    def _pattern(self, text, where):
        """Split ``/pattern/flags rest``; return (compiled, anchored, rest)."""
        if not text:
            raise TableConfigError("%s: missing pattern" % where)
        delim = text[0]
        if delim.isalnum() or delim.isspace() or delim == "\\":
            raise TableConfigError("%s: bad pattern delimiter %r" % (where, delim))
        i = 1
        while True:
            if i >= len(text):
                raise TableConfigError("%s: no closing regexp delimiter %r" % (where, delim))
            if text[i] == "\\" and i + 1 < len(text):
                i += 2
                continue
            if text[i] == delim:
                break
            i += 1
        body = text[1:i]
        match = re.match(r"\S*", text[i + 1:])
        flags, rest = match.group(0), text[i + 1 + match.end():].strip()
        try:
            regex, anchored = self._compile(body, flags, where)
        except (re.error, ValueError, OverflowError) as err:
            raise TableConfigError("%s: bad pattern %s%s%s: %s" % (where, delim, body, delim, err)) from None
        return regex, anchored, rest

    def _get(self, key):
        rules = self._data
        i, count = 0, len(rules)
        while i < count:
            rule = rules[i]
            match = rule.search(key)
            hit = (match is None) if rule.negate else (match is not None)
            if rule.result is None:
                i = i + 1 if hit else rule.end
                continue
            if hit:
                value = "".join(p if isinstance(p, str) else (match.group(p) or "") for p in rule.result)
                if value:
                    return value
                log.warn("table {spec}: key {key}: empty string result is not allowed (line {line})",
                         spec=self.spec, key=key, line=rule.lineno)
                return None
            i += 1
        return None


class PCRETable(RegexpTable):
    """``pcre:/file``: Perl-compatible regular expressions, first match wins."""

    type_name = "pcre"

    def _compile(self, body, flags, where):
        options, anchored, endonly, ungreedy = re.IGNORECASE, False, False, False
        toggles = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
        for flag in flags:
            if flag in toggles:
                options ^= toggles[flag]
            elif flag == "A":
                anchored = True
            elif flag == "E":
                endonly = True
            elif flag == "U":
                ungreedy = not ungreedy
            elif flag == "X":
                pass
            else:
                raise TableConfigError('%s: unknown pcre option "%s"' % (where, flag))
        # PCRE_DOLLAR_ENDONLY is ignored when multi-line mode is on.
        pattern = translate_pcre(body, endonly and not options & re.MULTILINE, ungreedy)
        return re.compile(pattern, options), anchored
