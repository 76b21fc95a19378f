# -*- test-case-name: tests.admin.test_conf -*-
"""``mailstack postconf``: show and edit main.cf parameters, as Postfix's postconf(1).

Without options, every parameter is printed as ``name = value`` (the value
in effect: main.cf's setting, else the default), sorted by name.

- ``-n``: only parameters set explicitly in main.cf.
- ``-d``: default values instead of the values in effect.
- ``-h``: values only, without ``name =``.
- ``-x``: expand ``$name`` references in the printed values.
- ``-e name=value ...``: set parameters in main.cf in place, keeping
  comments and the order of the file; a new name is appended.
- ``-X name ...``: remove parameters from main.cf.
- ``name ...``: print only those parameters.
- ``--docs``: print the parameter reference (docs/parameters.md) in Markdown.

Edits are checked before main.cf is replaced (written to a temporary file,
fsynced and renamed), so a bad value leaves the file as it was.
"""

import os
import sys

from mailstack.config import maincf, params
from mailstack.config.maincf import ConfigError, Setting
from mailstack.util.atomic import replace_file

DESCRIPTION = __doc__.split("\n", 2)[2]
ADD_HELP = False  # -h means "values only", as in Postfix; --help still works


def add_arguments(parser):
    parser.add_argument("-n", dest="non_default", action="store_true",
                        help="show only parameters set explicitly in main.cf")
    parser.add_argument("-d", dest="defaults", action="store_true", help="show default values")
    parser.add_argument("-h", dest="values_only", action="store_true", help="show values only, not names")
    parser.add_argument("-x", dest="expand", action="store_true", help="expand $name in values")
    parser.add_argument("-e", dest="edit", action="store_true", help="edit main.cf: arguments are name=value")
    parser.add_argument("-X", dest="remove", action="store_true", help="remove the named parameters from main.cf")
    parser.add_argument("--docs", action="store_true", help="print the parameter reference in Markdown")
    parser.add_argument("names", nargs="*", metavar="name", help="parameters to show (or name=value with -e)")
    parser.add_argument("--help", action="help", help="show this help message and exit")


def run(args):
    if args.docs:
        sys.stdout.write(reference_markdown())
        return 0
    if args.edit:
        return edit(args.config, args.names)
    if args.remove:
        return remove(args.config, args.names)
    config = maincf.load(args.config)
    for warning in config.warnings:
        sys.stderr.write("mailstack/postconf: warning: %s\n" % warning)
    status = 0
    if args.names:
        names = args.names
    elif args.non_default:
        names = config.explicit_names()
    else:
        names = sorted(set(params.PARAMS) | set(config.explicit_names()))
    for name in names:
        if name not in params.PARAMS and not config.is_set(name):
            sys.stderr.write("mailstack/postconf: warning: %s: unknown parameter\n" % name)
            status = 1
            continue
        if args.defaults:
            if name not in params.PARAMS:
                continue
            text = config.default_text(name)
            value = maincf.Config((), config.env).expand_text(text, name) if args.expand else text
        else:
            value = config.expand(name) if args.expand else config.text(name)
        sys.stdout.write(value + "\n" if args.values_only else _line(name, value))
    return status


def _line(name, value):
    return "%s = %s\n" % (name, value) if value else "%s =\n" % name


def _read_main_cf(config_directory):
    path = os.path.join(config_directory, "main.cf")
    try:
        with open(path, encoding="utf-8") as handle:
            return path, handle.read().splitlines(keepends=True)
    except FileNotFoundError:
        return path, []


def _logical_spans(lines):
    """Yield (name, first index, end index) of each logical line of main.cf."""
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or line[0].isspace():
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end][:1].isspace() and lines[end].strip() \
                and not lines[end].strip().startswith("#"):
            end += 1
        yield stripped.partition("=")[0].strip(), i, end
        i = end


def _write_checked(config_directory, path, lines):
    """Check the new main.cf text, then replace the file atomically."""
    text = "".join(lines)
    settings = maincf.parse_lines(text)
    env = maincf.Environment(config_directory=os.path.abspath(config_directory))
    maincf.Config(settings, env).validate()
    replace_file(path, text)


def edit(config_directory, assignments):
    """Set ``name=value`` assignments in main.cf, keeping everything else; return the exit status."""
    path, lines = _read_main_cf(config_directory)
    updates = {}
    for item in assignments:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            raise ConfigError("-e: bad argument %r: expected name=value" % item)
        maincf.parse_lines("%s = %s" % (name, value), "-e")
        updates[name] = value
    spans = {name: (start, end) for name, start, end in _logical_spans(lines)}
    # Replace from the bottom up so earlier indexes stay valid.
    for name, (start, end) in sorted(spans.items(), key=lambda item: -item[1][0]):
        if name in updates:
            lines[start:end] = [_line(name, updates.pop(name))]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for name, value in updates.items():
        if name not in params.PARAMS:
            sys.stderr.write("mailstack/postconf: warning: %s: unknown parameter\n" % name)
        lines.append(_line(name, value))
    _write_checked(config_directory, path, lines)
    return 0


def remove(config_directory, names):
    """Remove parameters from main.cf; return the exit status."""
    path, lines = _read_main_cf(config_directory)
    wanted = set(names)
    for name, start, end in sorted(_logical_spans(lines), key=lambda span: -span[1]):
        if name in wanted:
            del lines[start:end]
    _write_checked(config_directory, path, lines)
    return 0


def reference_markdown():
    """Return docs/parameters.md text, generated from the parameter registry."""
    out = ["# mailstack parameters\n\n",
           "Generated by `mailstack postconf --docs` from `mailstack/config/params.py`; "
           "do not edit by hand. Values use main.cf syntax: `$name` expands to another "
           "parameter. Names follow Postfix, or Dovecot for auth and mailbox access.\n"]
    for title, entries in params.groups():
        out.append("\n## %s\n\n| parameter | type | default | description |\n|---|---|---|---|\n" % title)
        for param in entries:
            default = param.default if isinstance(param.default, str) else "(computed: %s)" % (
                param.default.__doc__ or "see description").strip()
            default = "`%s`" % default if default else "(empty)"
            out.append("| `%s` | %s | %s | %s |\n" % (param.name, param.type.describe(),
                                                    default.replace("|", "\\|"), param.doc))
    return "".join(out)
