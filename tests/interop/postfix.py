"""A real Postfix for interop tests and benchmarks, started from a temporary directory.

Usage in a test (the fixture skips the test when Postfix is not installed or
the tests do not run as root, which Postfix needs to start)::

    from tests.interop.postfix import postfix_factory  # noqa: F401 (pytest fixture)

    def test_something(postfix_factory):
        pf = postfix_factory(main_cf={"smtpd_sasl_auth_enable": "yes"})
        pf.start()
        ... talk SMTP to 127.0.0.1:pf.port ...
        assert pf.wait_for_log(r"sasl_method=PLAIN")

or, outside pytest fixtures, ``with PostfixInstance() as pf: ...`` (a benchmark, say).

Recipes: ``mailboxes=["joe@example.test"]`` makes Postfix deliver that
address itself into a maildir (:meth:`PostfixInstance.maildir_messages`),
so it can be the receiving end of mailstack's SMTP client;
``main_cf={"relayhost": "[127.0.0.1]:%d" % port}`` makes it relay
everything else to a mailstack smtpd under test; ``smtpd_options`` adds
``-o`` overrides to its smtpd (e.g. ``{"smtpd_sasl_auth_enable": "yes"}``).

What you get: ``config_directory`` (``main.cf``, ``master.cf``),
``queue_directory`` and ``data_directory`` of its own, so instances do not
share state with the system Postfix or with each other; one ``smtpd``
listening on ``127.0.0.1:port`` (a free port unless given); every internal
service of a standard Postfix (cleanup, qmgr, trivial-rewrite, smtp, local,
virtual, bounce...) without chroot, so mail can really flow; and the log in
``maillog`` through ``postlogd`` (``maillog_file``), read with :meth:`log`
and :meth:`wait_for_log`.

Unix sockets that Postfix daemons connect to (e.g. a Dovecot-protocol auth
socket) belong in :meth:`private_path`: daemons chdir into the queue
directory as root before dropping privileges, so ``smtpd_sasl_path =
private/auth`` reaches a socket there even when the temporary directory's
parents are closed to the ``postfix`` user (pytest's are mode 0700).  Give
such sockets mode 0666: the ``private/`` directory (0700, owned by
``postfix``) is what protects them, as for Postfix's own sockets.
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

# The internal services of Debian's master.cf, chroot turned off (no chroot jail to populate).
INTERNAL_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(Exception):
    """Postfix could not be configured, started or stopped; the message holds its output."""


def postfix_binary():
    """Return the path of the ``postfix`` command, or None when Postfix is not installed."""
    return shutil.which("postfix") or next(
        (p for p in ("/usr/sbin/postfix", "/usr/local/sbin/postfix") if os.access(p, os.X_OK)), None)


def skip_reason():
    """Return why a real Postfix cannot run here, or None when it can."""
    if postfix_binary() is None:
        return "postfix is not installed (Debian package 'postfix'; .ci/run installs it)"
    if os.geteuid() != 0:
        return "starting Postfix needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no 'postfix' user (install the Debian package 'postfix')"
    return None


def free_port(host="127.0.0.1"):
    """Return a TCP port that is free on ``host`` right now (the OS chooses it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class PostfixInstance:
    """One private Postfix: its own configuration, queue, data directory and log.

    Args:
        directory: an empty (or missing) directory that will hold everything; every directory
            above it must be searchable by the ``postfix`` user (Postfix opens files in its data
            directory with that user's rights).  None: a new directory under the system temporary
            directory, removed again by :meth:`cleanup`.
        port: the SMTP port on 127.0.0.1; a free one when None.
        main_cf: extra main.cf settings, name -> value; they override the defaults below.
        master_cf: extra master.cf lines appended after the standard services.
        smtpd_options: ``-o name=value`` overrides for the listening smtpd, name -> value.
        hostname: ``myhostname``.
        mailboxes: addresses that Postfix delivers itself (virtual(8)) into ``mail/DOMAIN/LOCALPART/``
            maildirs, read back with :meth:`maildir_messages`; other addresses of their domains are
            rejected at RCPT, other domains follow the usual rules (``relayhost = [127.0.0.1]:PORT``
            sends them to a server under test).

    Attributes:
        config_directory, queue_directory, data_directory, maillog, mail_directory: paths.
        port: the SMTP port.
    """

    def __init__(self, directory=None, port=None, main_cf=None, master_cf="", smtpd_options=None,
                 hostname="postfix.example.test", mailboxes=()):
        self._temporary = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix="mailstack-postfix-")
            os.chmod(directory, 0o755)
        self.directory = os.path.abspath(str(directory))
        self.config_directory = os.path.join(self.directory, "etc")
        self.queue_directory = os.path.join(self.directory, "queue")
        self.data_directory = os.path.join(self.directory, "data")
        self.maillog = os.path.join(self.directory, "log", "maillog")
        self.mail_directory = os.path.join(self.directory, "mail")
        self.mailboxes = tuple(address.lower() for address in mailboxes)
        self.port = port or free_port()
        self.hostname = hostname
        self.main_cf = dict(main_cf or {})
        self.master_cf = master_cf
        self.smtpd_options = dict(smtpd_options or {})
        self._master_pid = None
        self._written = False
        self._checked = False

    # -- configuration ------------------------------------------------------

    def default_main_cf(self):
        """Return the base main.cf settings, as a dict."""
        return {
            "compatibility_level": "3.6",
            "config_directory": self.config_directory,
            "queue_directory": self.queue_directory,
            "data_directory": self.data_directory,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": os.path.dirname(self.maillog),
            # A test must not wait on DNS that the sandbox cannot reach.
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
        }

    def _maildir_main_cf(self):
        owner = pwd.getpwnam("postfix")
        return {
            "virtual_mailbox_domains": " ".join(sorted({a.rpartition("@")[2] for a in self.mailboxes})),
            "virtual_mailbox_base": self.mail_directory,
            # texthash: no postmap step; Postfix forbids regexp substitution in this table.
            "virtual_mailbox_maps": "texthash:%s" % os.path.join(self.config_directory, "vmailbox"),
            "virtual_uid_maps": "static:%d" % owner.pw_uid,
            "virtual_gid_maps": "static:%d" % owner.pw_gid,
        }

    def private_path(self, name):
        """Return the absolute path of ``private/NAME`` in the queue directory (see the module doc)."""
        return os.path.join(self.queue_directory, "private", name)

    def write_config(self):
        """Write main.cf and master.cf and create the directories Postfix expects.

        Raises:
            PostfixError: when the ``postfix`` user cannot reach the directory.
        """
        for path in (self.config_directory, self.queue_directory, os.path.dirname(self.maillog)):
            os.makedirs(path, mode=0o755, exist_ok=True)
        _check_searchable(self.directory)
        owner = pwd.getpwnam("postfix")
        for path in (os.path.join(self.queue_directory, "private"), self.data_directory):
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chown(path, owner.pw_uid, -1)
        settings = self.default_main_cf()
        if self.mailboxes:
            settings.update(self._maildir_main_cf())
            os.makedirs(self.mail_directory, mode=0o755, exist_ok=True)
            os.chown(self.mail_directory, owner.pw_uid, owner.pw_gid)
            with open(os.path.join(self.config_directory, "vmailbox"), "w") as handle:
                for address in self.mailboxes:
                    local, _, domain = address.rpartition("@")
                    handle.write("%s %s/%s/\n" % (address, domain, local))
        settings.update(self.main_cf)
        with open(os.path.join(self.config_directory, "main.cf"), "w") as handle:
            handle.write("# written by tests/interop/postfix.py\n")
            for name, value in settings.items():
                handle.write("%s = %s\n" % (name, value))
        options = "".join("\n  -o %s=%s" % item for item in self.smtpd_options.items())
        with open(os.path.join(self.config_directory, "master.cf"), "w") as handle:
            handle.write("127.0.0.1:%d inet n - n - - smtpd%s\n" % (self.port, options))
            handle.write(INTERNAL_SERVICES)
            if self.master_cf:
                handle.write(self.master_cf.rstrip("\n") + "\n")
        self._written = True

    def postconf(self, *args):
        """Run ``postconf -c DIR ARGS`` and return its standard output."""
        return self._run(["postconf", "-c", self.config_directory] + list(args)).stdout

    def _run(self, argv, timeout=60):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise PostfixError("%s failed (status %d): %s%s\n%s" % (
                " ".join(argv), result.returncode, result.stdout, result.stderr, self.log()[-4000:]))
        return result

    # -- life cycle -----------------------------------------------------------

    def check(self):
        """Run ``postfix check`` (it also creates the queue subdirectories); raise PostfixError on failure."""
        if not self._written:
            self.write_config()
        self._run([postfix_binary(), "-c", self.config_directory, "check"])
        self._checked = True

    def start(self):
        """Start Postfix (after :meth:`check`, unless done already); return once it listens.

        Raises:
            PostfixError: with Postfix's output and log when it does not start.
        """
        if not self._checked:
            self.check()
        self._run([postfix_binary(), "-c", self.config_directory, "start"])
        self._master_pid = self._read_pid()
        self._wait_listening()

    def _read_pid(self):
        try:
            with open(os.path.join(self.queue_directory, "pid", "master.pid")) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def _wait_listening(self, timeout=10):
        # Probe by binding, not connecting: a connection would start an smtpd process early
        # (and one with SASL enabled dies when its auth server is not up yet).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            time.sleep(0.05)
        raise PostfixError("Postfix does not listen on 127.0.0.1:%d\n%s" % (self.port, self.log()[-4000:]))

    @property
    def running(self):
        """True while this instance's master process is alive."""
        return self._master_pid is not None and _alive(self._master_pid)

    def stop(self, timeout=15):
        """Stop Postfix and wait until its master process has exited (abort it after ``timeout``)."""
        if self._master_pid is None:
            return
        subprocess.run([postfix_binary(), "-c", self.config_directory, "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while _alive(self._master_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(self._master_pid):
            subprocess.run([postfix_binary(), "-c", self.config_directory, "abort"], capture_output=True, timeout=60)
        self._master_pid = None

    def cleanup(self):
        """Stop Postfix and remove the directory if this instance created it."""
        self.stop()
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.cleanup()

    def maildir_messages(self, address):
        """Return the messages (bytes) delivered to ``address`` (one of ``mailboxes``), oldest first."""
        local, _, domain = address.lower().rpartition("@")
        folder = os.path.join(self.mail_directory, domain, local, "new")
        try:
            names = sorted(os.listdir(folder), key=lambda name: os.stat(os.path.join(folder, name)).st_mtime)
        except FileNotFoundError:
            return []
        result = []
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                result.append(handle.read())
        return result

    # -- log --------------------------------------------------------------------

    def log(self):
        """Return the whole maillog written so far ("" before the first line)."""
        try:
            with open(self.maillog, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern, timeout=10):
        """Return the first maillog line matching regex ``pattern``, waiting up to ``timeout`` s; None if none."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if regex.search(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def _check_searchable(directory):
    """Raise PostfixError unless every directory above ``directory`` is searchable by others."""
    path = os.path.dirname(directory)
    while True:
        if not os.stat(path).st_mode & 0o001:
            raise PostfixError("the postfix user cannot search %s (mode %o), on the way to %s; "
                               "use a directory under %s" % (path, os.stat(path).st_mode & 0o777, directory,
                                                             tempfile.gettempdir()))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _alive(pid):
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def postfix_factory():
    """Return ``make(**kwargs) -> PostfixInstance`` (not started); every instance is stopped and removed
    at teardown.  Each lives in its own directory under the system temporary directory, because pytest's
    ``tmp_path`` is closed to the ``postfix`` user.

    Skips the test when Postfix cannot run here (see :func:`skip_reason`).
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    instances = []

    def make(**kwargs):
        instance = PostfixInstance(**kwargs)
        instances.append(instance)
        return instance

    yield make
    for instance in instances:
        instance.cleanup()
