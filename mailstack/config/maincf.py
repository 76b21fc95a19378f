# -*- test-case-name: tests.config.test_maincf -*-
"""The main.cf reader and the loaded, immutable configuration.

Syntax (Postfix ``postconf(5)``):

- ``name = value``; white space around ``=`` and at both ends is ignored.
- A line that starts with white space continues the previous logical line.
- Lines whose first non-blank character is ``#`` are comments, and so are
  blank lines; ``#`` elsewhere is part of the value.
- A later setting of a name overrides an earlier one (with a warning).
- ``$name``, ``${name}`` and ``$(name)`` expand to another parameter's
  value, recursively; ``${name?text}`` gives text if name is non-empty,
  ``${name:text}`` if it is empty; ``{text}`` braces may enclose the text
  (Postfix 3.0 ``${name?{a}:{b}}``).  ``$$`` is a literal ``$``.  An
  expansion loop is an error.

Every value is checked against its type from :mod:`mailstack.config.params`
when the file is loaded, so a bad value stops startup with
``main.cf:LINE: reason`` instead of failing later.  Unknown names are kept
(they may be used in ``$name`` expansions) and produce a warning when no
other value refers to them.
"""

import os
import re
import socket
from dataclasses import dataclass, field

from mailstack.config.params import PARAMS

_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_REF_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)|\(([A-Za-z0-9_]+)|([A-Za-z0-9_]+))")


class ConfigError(Exception):
    """A configuration error; ``str()`` is ``file:line: reason``."""


@dataclass(frozen=True)
class Setting:
    """One ``name = value`` from a file: its raw text and where it came from."""

    name: str
    text: str
    source: str = "main.cf"
    line: int = 0

    @property
    def where(self):
        return "%s:%d" % (self.source, self.line) if self.line else self.source


@dataclass(frozen=True)
class Environment:
    """Machine facts that some defaults depend on.

    Attributes:
        hostname: the default for ``myhostname``.
        config_directory: the directory main.cf was read from.
        mynetworks_style: filled in by the loader before ``mynetworks`` is computed.
    """

    hostname: str = field(default_factory=lambda: default_hostname())
    config_directory: str = "/etc/mailstack"
    mynetworks_style: str = "host"


def default_hostname():
    """Return the machine's fully-qualified name, as Postfix's ``myhostname`` default."""
    name = socket.gethostname()
    if "." not in name:
        fqdn = socket.getfqdn(name)
        if "." in fqdn and not fqdn.startswith("localhost"):
            name = fqdn
    return name.lower()


def parse_lines(text, source="main.cf"):
    """Parse main.cf text into a list of :class:`Setting` in file order.

    Raises:
        ConfigError: on a line without ``=``, a bad name, or a
            continuation line with nothing to continue.
    """
    settings = []
    current = None  # [first_line_number, [pieces]]

    def finish():
        if current is None:
            return
        lineno, pieces = current
        logical = " ".join(pieces)
        name, eq, value = logical.partition("=")
        name = name.strip()
        if not eq:
            raise ConfigError("%s:%d: missing '=' after parameter name %r" % (source, lineno, name))
        if not _NAME_RE.match(name):
            raise ConfigError("%s:%d: bad parameter name %r" % (source, lineno, name))
        settings.append(Setting(name, value.strip(), source, lineno))

    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace():
            if current is None:
                raise ConfigError("%s:%d: continuation line without a parameter to continue" % (source, lineno))
            current[1].append(stripped)
            continue
        finish()
        current = [lineno, [stripped]]
    finish()
    return settings


def _split_braced(text):
    """Split ``{a}:{b}`` style conditional text; plain text is returned as is."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1]
    return text


class Config:
    """A loaded configuration: settings from main.cf over the registry's defaults.

    Values are looked up by name: ``config["message_size_limit"]`` is the
    typed value, :meth:`expand` the expanded text, :meth:`text` the raw text.
    The object is never changed after loading; :meth:`with_overrides` makes
    a new one for a master.cf service's ``-o`` settings.
    """

    def __init__(self, settings=(), env=None, warnings=()):
        self.env = env or Environment()
        self._settings = {}
        for setting in settings:
            self._settings[setting.name] = setting
        self.warnings = list(warnings)
        self._values = {}
        style = self._settings.get("mynetworks_style")
        if style is not None:
            self.env = Environment(self.env.hostname, self.env.config_directory,
                                   style.text.strip().lower())

    # -- raw access -----------------------------------------------------

    def is_set(self, name):
        """Return True when ``name`` was given explicitly (main.cf or ``-o``)."""
        return name in self._settings

    def setting(self, name):
        """Return the explicit :class:`Setting` for ``name``, or None."""
        return self._settings.get(name)

    def explicit_names(self):
        """Return the explicitly set names, sorted."""
        return sorted(self._settings)

    def text(self, name):
        """Return the unexpanded text of ``name``: explicit, else its default, else ''."""
        setting = self._settings.get(name)
        if setting is not None:
            return setting.text
        param = PARAMS.get(name)
        if param is not None:
            return param.default_text(self.env)
        return ""

    def default_text(self, name):
        """Return the registry default of ``name`` as unexpanded text."""
        return PARAMS[name].default_text(self.env)

    # -- expansion --------------------------------------------------------

    def expand(self, name):
        """Return the value of ``name`` with every ``$name`` expanded.

        Raises:
            ConfigError: on an expansion loop, naming where it started.
        """
        return self._expand_text(self.text(name), [name])

    def expand_text(self, text, name="(text)"):
        """Expand ``$name`` references in arbitrary text against this config."""
        return self._expand_text(text, [name])

    def _expand_text(self, text, stack):
        if "$" not in text:
            return text
        out = []
        i = 0
        n = len(text)
        while i < n:
            char = text[i]
            if char != "$":
                out.append(char)
                i += 1
                continue
            if i + 1 < n and text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if i + 1 < n and text[i + 1] in "{(":
                close = "}" if text[i + 1] == "{" else ")"
                end = self._matching(text, i + 1, close, stack)
                inner = text[i + 2:end]
                out.append(self._expand_braced(inner, stack))
                i = end + 1
                continue
            match = re.match(r"[A-Za-z0-9_]+", text[i + 1:])
            if not match:
                out.append("$")
                i += 1
                continue
            out.append(self._lookup(match.group(0), stack))
            i += 1 + len(match.group(0))
        return "".join(out)

    def _matching(self, text, start, close, stack):
        opening = text[start]
        depth = 0
        for j in range(start, len(text)):
            if text[j] == opening:
                depth += 1
            elif text[j] == close:
                depth -= 1
                if depth == 0:
                    return j
        raise ConfigError("%s: missing %r in %r" % (self._where(stack[0]), close, text))

    def _expand_braced(self, inner, stack):
        match = re.match(r"([A-Za-z0-9_]+)(.*)$", inner, re.S)
        if not match:
            raise ConfigError("%s: bad macro %r" % (self._where(stack[0]), "${%s}" % inner))
        name, rest = match.groups()
        if not rest:
            return self._lookup(name, stack)
        op, cond = rest[0], rest[1:]
        if op not in "?:":
            raise ConfigError("%s: bad macro %r" % (self._where(stack[0]), "${%s}" % inner))
        # postconf(5): ${name?value} is value when $name is non-empty, and
        # ${name:value} is value when $name is empty; both are empty otherwise.
        # Postfix 3.0 adds ${name?{a}:{b}} for "a if non-empty else b".
        if_set, if_empty = (_split_braced(cond), "") if op == "?" else ("", _split_braced(cond))
        if op == "?" and cond.strip().startswith("{"):
            parts = re.match(r"\s*\{(.*?)\}\s*(?::\s*\{(.*)\})?\s*$", cond, re.S)
            if parts:
                if_set, if_empty = parts.group(1), parts.group(2) or ""
        value = self._lookup(name, stack)
        return self._expand_text(if_set if value.strip() else if_empty, stack)

    def _lookup(self, name, stack):
        if name in stack:
            chain = " -> ".join("$" + n for n in stack[stack.index(name):] + [name])
            raise ConfigError("%s: recursive parameter expansion: %s" % (self._where(stack[0]), chain))
        if name not in self._settings and name not in PARAMS:
            return ""
        return self._expand_text(self.text(name), stack + [name])

    def _where(self, name):
        setting = self._settings.get(name)
        if setting is not None:
            return "%s: parameter %s" % (setting.where, name)
        return "parameter %s" % name

    # -- typed values -----------------------------------------------------

    def __getitem__(self, name):
        """Return the typed value of ``name``.

        Raises:
            KeyError: for a name that is not in the registry.
            ConfigError: for a value that does not parse, as ``file:line: reason``.
        """
        try:
            return self._values[name]
        except KeyError:
            pass
        param = PARAMS[name]
        expanded = self.expand(name)
        try:
            value = param.type.parse(expanded)
        except ValueError as err:
            raise ConfigError("%s: %s" % (self._where(name), err)) from None
        self._values[name] = value
        return value

    def get(self, name, default=None):
        """Return the typed value of a registered name, or the expanded text of an unregistered one."""
        if name in PARAMS:
            return self[name]
        if name in self._settings:
            return self.expand(name)
        return default

    def validate(self):
        """Check every explicit setting and every default; return self.

        Raises:
            ConfigError: for the first value that is bad or loops.
        """
        referenced = set()
        for setting in self._settings.values():
            for match in _REF_RE.finditer(setting.text):
                referenced.add(next(g for g in match.groups() if g))
        for name in self._settings:
            if name in PARAMS:
                self[name]
            else:
                self.expand(name)
                if name not in referenced:
                    self.warnings.append("%s: unknown parameter %s (ignored)"
                                         % (self._settings[name].where, name))
        for name in PARAMS:
            self[name]
        return self

    def with_overrides(self, settings):
        """Return a new Config with ``settings`` (a list of :class:`Setting`) on top.

        Used for master.cf ``-o name=value``; the result is validated.
        """
        merged = list(self._settings.values()) + list(settings)
        return Config(merged, self.env).validate()


def load(config_directory, env=None):
    """Read ``config_directory/main.cf`` and return a validated :class:`Config`.

    A missing main.cf gives a configuration of defaults only.

    Raises:
        ConfigError: for any syntax or value error, as ``main.cf:LINE: reason``.
    """
    config_directory = os.path.abspath(config_directory)
    if env is None:
        env = Environment(config_directory=config_directory)
    path = os.path.join(config_directory, "main.cf")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("%s: cannot read: %s" % (path, err)) from None
    settings = parse_lines(text, "main.cf")
    warnings = []
    seen = {}
    for setting in settings:
        if setting.name in seen:
            warnings.append("%s: overriding earlier entry: %s=%s (line %d)"
                            % (setting.where, setting.name, seen[setting.name].text, seen[setting.name].line))
        seen[setting.name] = setting
    return Config(settings, env, warnings).validate()
