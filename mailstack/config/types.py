# -*- test-case-name: tests.config.test_maincf -*-
"""Value types of configuration parameters.

Every parameter in :mod:`mailstack.config.params` names one of these types.
A type turns the expanded text of a value (after ``$name`` expansion) into a
Python value, or raises :class:`ValueError` with a short reason that the
config loader prefixes with ``main.cf:LINE:``.

The units follow Postfix: time values take an optional ``s``, ``m``, ``h``,
``d`` or ``w`` suffix and a per-parameter default unit (``postconf(5)``
"Time units"); booleans are ``yes``/``no`` (Dovecot's ``true``/``false`` are
also accepted); lists are separated by commas and/or white space.
"""

import re

_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_SIZE_RE = re.compile(r"^(\d+)([kKmMgG]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}

_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


class ParamType:
    """Base of all parameter types.

    Subclasses implement :meth:`parse`, which takes the fully expanded text
    and returns the Python value or raises ``ValueError`` with a reason.
    """

    name = "string"

    def parse(self, text):
        return text

    def describe(self):
        """Return a short human description used in the generated docs."""
        return self.name


class String(ParamType):
    """Free text; surrounding white space is removed."""

    name = "string"

    def parse(self, text):
        return text.strip()


class Path(String):
    """A file or directory name; an empty value means "not set"."""

    name = "path"


class Bool(ParamType):
    """``yes`` or ``no`` (also ``true``/``false``, ``on``/``off``)."""

    name = "boolean"

    def parse(self, text):
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("bad boolean value %r (expected yes or no)" % text.strip())


class Int(ParamType):
    """A whole number, optionally bounded by ``minimum``/``maximum``."""

    name = "integer"

    def __init__(self, minimum=None, maximum=None):
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, text):
        word = text.strip()
        try:
            value = int(word)
        except ValueError:
            raise ValueError("bad numerical value %r" % word) from None
        self._check_range(value, word)
        return value

    def _check_range(self, value, word):
        if self.minimum is not None and value < self.minimum:
            raise ValueError("value %r is below the minimum %s" % (word, self.minimum))
        if self.maximum is not None and value > self.maximum:
            raise ValueError("value %r is above the maximum %s" % (word, self.maximum))


class Size(Int):
    """A size in bytes; ``k``, ``m`` and ``g`` suffixes multiply by 1024."""

    name = "size"

    def parse(self, text):
        word = text.strip()
        match = _SIZE_RE.match(word)
        if not match:
            raise ValueError("bad size value %r" % word)
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        self._check_range(value, word)
        return value


class Time(ParamType):
    """A duration in seconds (float), Postfix style: ``300s``, ``5m``, ``1h``, ``5d``, ``1w``.

    Args:
        unit: the unit assumed when the value has no suffix (Postfix's
            per-parameter default unit).
        minimum: the smallest accepted value, in seconds.
    """

    name = "time"

    def __init__(self, unit="s", minimum=0):
        self.unit = unit
        self.minimum = minimum

    def parse(self, text):
        word = text.strip()
        match = _TIME_RE.match(word)
        if not match:
            raise ValueError("bad time value %r (expected a number and one of s, m, h, d, w)" % word)
        seconds = float(match.group(1)) * _TIME_UNITS[match.group(2) or self.unit]
        if self.minimum is not None and seconds < self.minimum:
            raise ValueError("time value %r is below the minimum %ss" % (word, self.minimum))
        return seconds

    def describe(self):
        return "time (default unit: %s)" % self.unit


class Choice(ParamType):
    """One word out of a fixed set (compared case-insensitively)."""

    name = "choice"

    def __init__(self, *choices):
        self.choices = choices

    def parse(self, text):
        word = text.strip().lower()
        if word not in self.choices:
            raise ValueError("bad value %r (expected one of: %s)" % (text.strip(), ", ".join(self.choices)))
        return word

    def describe(self):
        return "one of: " + ", ".join(self.choices)


def split_list(text):
    """Split a Postfix list value on commas and white space.

    Text inside ``{ }`` braces stays together (``inline:{ a=b, c=d }``),
    as in Postfix's ``mystrtok_cw``.

    Returns:
        list of str, without empty items.
    """
    items, current, depth = [], [], 0
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(char)
    if depth:
        raise ValueError("missing '}' in %r" % text.strip())
    if current:
        items.append("".join(current))
    return items


class List(ParamType):
    """A list of words separated by commas and/or white space."""

    name = "list"

    def parse(self, text):
        return tuple(split_list(text))


class MapList(List):
    """A list of lookup tables, each ``type:name`` (see :mod:`mailstack.tables`)."""

    name = "table list"

    def parse(self, text):
        maps = super().parse(text)
        for item in maps:
            if ":" not in item:
                raise ValueError("bad table %r: expected type:name" % item)
        return maps


class Driver(ParamType):
    """A ``driver:args`` value, as Dovecot's passdb/userdb (``passwd-file:/etc/passwd``)."""

    name = "driver:args"

    def parse(self, text):
        word = text.strip()
        if not word:
            return ("", "")
        driver, _, args = word.partition(":")
        if not re.match(r"^[a-z][a-z0-9-]*$", driver):
            raise ValueError("bad driver %r: expected driver:args" % word)
        return (driver, args)


STRING = String()
PATH = Path()
BOOL = Bool()
INT = Int()
LIST = List()
MAPS = MapList()
