# -*- test-case-name: tests.auth.test_service -*-
"""The auth service: one instance per process, used by SMTP AUTH, POP3, IMAP and the auth socket.

Callers describe the client with an :class:`AuthRequest` and then either
run a SASL conversation (:meth:`AuthService.start` gives a
:class:`SASLSession`) or check a plaintext login
(:meth:`AuthService.verify_plain`, for POP3 ``USER``/``PASS`` and IMAP
``LOGIN``).  Every answer is a :class:`SASLStep`; failures come back only
after the failure delay (:mod:`mailstack.auth.delay`), so callers simply
await.  :meth:`AuthService.lookup_user` asks the userdb.

Flow of a login (Dovecot's ``auth-request.c`` in small):

1. the user name is normalised (``auth_default_realm``,
   ``auth_username_format``); ``user*master`` (``auth_master_user_separator``)
   or a PLAIN authzid selects a master-user login, checked against
   ``auth_master_passdb``;
2. the passdb is asked (through the cache), in a thread when it does I/O;
3. a plaintext mechanism verifies the password with the user's scheme (in a
   thread: hashing is slow); other mechanisms get credentials in their own
   scheme, derived from a plaintext password when that is what is stored,
   and fail with "X needs a X or plaintext password; user has Y" otherwise.

Unknown users and wrong passwords are the client's failures: logged at
info with ``auth_verbose = yes`` (debug otherwise) and delayed.  A passdb
that cannot answer is ours: logged as an error, answered at once with a
temporary failure (``SASLStep.temporary``).

Log lines, as Dovecot's: ``passwd-file(joe@example.com,192.0.2.1): Password mismatch``,
``passwd-file(nobody@example.com,192.0.2.1): unknown user``,
``passwd-file(joe@example.com,192.0.2.1): CRAM-MD5 needs a CRAM-MD5 or plaintext password; user has SHA512-CRYPT``.

Parameters read: ``passdb``, ``userdb``, ``auth_master_passdb``,
``auth_mechanisms``, ``default_pass_scheme``, ``auth_username_format``,
``auth_default_realm``, ``auth_master_user_separator``, ``auth_cache_size``,
``auth_cache_ttl``, ``auth_cache_negative_ttl``, ``auth_failure_delay``,
``auth_failure_delay_max``, ``auth_failure_delay_reset``, ``auth_verbose``,
``disable_plaintext_auth``, ``login_trusted_networks``, ``mail_location``,
``mail_home``, ``myhostname``.
"""

import ipaddress

from twisted.internet import task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from mailstack.auth import username as usernames
from mailstack.auth.cache import AuthCache
from mailstack.auth.delay import FailureDelay
from mailstack.auth.mechs import registry as mech_registry
from mailstack.auth.mechs.base import Credentials, MechanismFailure
from mailstack.auth.passdb.base import DriverArgsError, DriverContext, PassdbError
from mailstack.auth.passdb.registry import open_passdb
from mailstack.auth.request import AuthRequest, SASLStep, UserInfo, failure, success
from mailstack.auth.schemes import registry as schemes
from mailstack.auth.userdb.registry import open_userdb
from mailstack.config.maincf import ConfigError

__all__ = ["AuthRequest", "SASLStep", "UserInfo", "UnknownMechanism", "AuthTemporaryError",
           "AuthService", "SASLSession", "auth_service"]

log = Logger(namespace="mailstack.auth")

_SIZE_SUFFIX = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


class UnknownMechanism(Exception):
    """A SASL mechanism that is not offered on this connection; ``str()`` is its name."""


class AuthTemporaryError(Exception):
    """The passdb or userdb could not answer (internal failure); the caller should answer 4xx."""


def _networks(words):
    result = []
    for word in words:
        word = word.replace("[", "").replace("]", "")
        try:
            result.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise ConfigError("parameter login_trusted_networks: bad network %r" % word) from None
    return result


def _ip(text):
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _in_networks(ip_text, networks):
    address = _ip(ip_text)
    return address is not None and any(address in net for net in networks if net.version == address.version)


def parse_quota(fields):
    """Return the quota in bytes from ``quota_bytes`` or a Dovecot ``quota_rule=*:storage=1G``; 0 = none."""
    text = fields.get("quota_bytes", "")
    if not text:
        rule = fields.get("quota_rule", "")
        root, _, rest = rule.partition(":")
        if root != "*" or not rest.startswith("storage="):
            return 0
        text = rest[len("storage="):]
    text = text.strip().lower()
    number = text.rstrip("bkmgt")
    try:
        return int(number) * _SIZE_SUFFIX[text[len(number):][:1]]
    except (ValueError, KeyError):
        return 0


class AuthService:
    """Authentication for every protocol of one process.

    Args:
        config: the main.cf :class:`~mailstack.config.maincf.Config`.
        reactor: provides the thread pool (and the clock unless ``clock`` is given).
        clock: an ``IReactorTime`` for delays and cache TTLs (tests pass a ``Clock``).
        run_in_thread: ``(fn, *args) -> Deferred``; by default the reactor's thread pool.

    Raises:
        ConfigError: for unknown mechanisms, schemes or drivers, or bad driver arguments.
    """

    def __init__(self, config, reactor, clock=None, run_in_thread=None):
        self.config = config
        self._reactor = reactor
        self._clock = clock or reactor
        if run_in_thread is None:
            def run_in_thread(fn, *args):
                return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)
        self._run_in_thread = run_in_thread
        ctx = DriverContext(config, run_in_thread)
        self.passdb = self._open("passdb", open_passdb, ctx)
        self.userdb = self._open("userdb", open_userdb, ctx)
        self.master_passdb = self._open("auth_master_passdb", open_passdb, ctx)
        try:
            self._default_scheme = schemes.lookup(config["default_pass_scheme"]).name
        except schemes.SchemeError as err:
            raise ConfigError("parameter default_pass_scheme: %s" % err) from None
        self._enabled = []
        for word in config["auth_mechanisms"]:
            mech = mech_registry.lookup(word)
            if mech is None:
                raise ConfigError("parameter auth_mechanisms: unknown mechanism %r (known: %s)"
                                  % (word, " ".join(mech_registry.names())))
            if mech not in self._enabled:
                self._enabled.append(mech)
        self._trusted = _networks(config["login_trusted_networks"])
        self.cache = AuthCache(self._clock, config["auth_cache_size"], config["auth_cache_ttl"],
                               config["auth_cache_negative_ttl"])
        self.delay = FailureDelay(self._clock, config["auth_failure_delay"], config["auth_failure_delay_max"],
                                  config["auth_failure_delay_reset"])

    def _open(self, name, opener, ctx):
        driver, args = self.config[name]
        if not driver:
            return None
        try:
            return opener(driver, args, ctx)
        except DriverArgsError as err:
            raise ConfigError("parameter %s: %s" % (name, err)) from None

    # -- what may be offered ---------------------------------------------

    def is_secure_connection(self, remote_ip, tls):
        """Return True for TLS, loopback, or a client in ``login_trusted_networks``."""
        if tls:
            return True
        address = _ip(remote_ip)
        if address is None:
            return False
        return address.is_loopback or _in_networks(remote_ip, self._trusted)

    def _plaintext_allowed(self, secure):
        return secure or not self.config["disable_plaintext_auth"]

    def _servable(self, mech):
        if mech.scheme is None:
            return self.passdb is not None
        return self.passdb is not None and self.passdb.credentials_lookup

    def mechanisms(self, secure):
        """Return the upper-case mechanism names to advertise on a connection.

        Plaintext mechanisms are left out on insecure connections when
        ``disable_plaintext_auth = yes``; mechanisms that need credentials
        are left out when the passdb cannot give them.
        """
        plaintext_ok = self._plaintext_allowed(secure)
        return [m.name for m in self._enabled if (plaintext_ok or not m.plaintext) and self._servable(m)]

    def start(self, mechanism, request):
        """Return a :class:`SASLSession` for ``mechanism``.

        Raises:
            UnknownMechanism: when the mechanism is unknown or not offered for ``request``.
        """
        name = mechanism.upper()
        if name not in self.mechanisms(request.secure):
            raise UnknownMechanism(name)
        mech = mech_registry.lookup(name)
        return SASLSession(self, mech, request)

    # -- plaintext logins ------------------------------------------------

    async def verify_plain(self, user, password, request):
        """Check a plaintext login (POP3 USER/PASS, IMAP LOGIN); return a final :class:`SASLStep`."""
        try:
            step = await self.check_plain(user, password, request)
        except Exception:
            step = self._unexpected(request, "login", user)
        return await self.finish(step, request)

    async def check_plain(self, user, password, request):
        """Like :meth:`verify_plain` but without the failure delay: for admin tools (``mailstack auth test``)."""
        if not self._plaintext_allowed(request.secure):
            return self._fail(request, "login", user, "Plaintext authentication disallowed on non-secure "
                              "(SSL/TLS) connections")
        return await self._verify_plain(user, password, "", request)

    async def passdb_fields(self, user):
        """Return the passdb's fields for ``user`` (without the password), or None when unknown.

        Raises:
            AuthTemporaryError: when the passdb cannot answer.
        """
        try:
            name = self._normalise(user)
            entry = await self._passdb_lookup(self.passdb, "passdb", name) if self.passdb else None
        except usernames.UsernameError:
            return None
        except PassdbError as err:
            raise AuthTemporaryError(str(err)) from None
        if entry is None:
            return None
        return dict(entry.fields, user=entry.user)

    async def finish(self, step, request):
        """Apply the failure delay to a final step, then return it (used by :class:`SASLSession`)."""
        if step.kind == "failure" and not step.temporary:
            delay = self.delay.record_failure(request.remote_ip)
            if delay > 0:
                await task.deferLater(self._clock, delay, lambda: None)
        return step

    async def _verify_plain(self, login, password, authzid, request):
        separator = self.config["auth_master_user_separator"]
        master_login = None
        target = login
        if separator and separator in login:
            target, _, master_login = login.partition(separator)
        if authzid and not self._same_user(authzid, login):
            master_login, target = login, authzid
        if master_login is not None:
            return await self._master_login(master_login, target, password, request)
        try:
            user = self._normalise(login)
        except usernames.UsernameError as err:
            return self._fail(request, "login", login, str(err))
        return await self._check_password(self.passdb, "passdb", user, password, request)

    async def _master_login(self, master_login, target, password, request):
        if self.master_passdb is None:
            return self._fail(request, "login", master_login,
                              "Master user login attempted without master passdbs")
        try:
            master = self._normalise(master_login)
            user = self._normalise(target)
        except usernames.UsernameError as err:
            return self._fail(request, "login", master_login, str(err))
        step = await self._check_password(self.master_passdb, "master", master, password, request)
        if not step.ok:
            return step
        try:
            entry = await self._passdb_lookup(self.passdb, "passdb", user)
        except PassdbError as err:
            return self._internal(request, self.passdb, user, err)
        if entry is None:
            return self._fail(request, self.passdb.name, user, "unknown user (master user %s)" % master)
        log.info("{ident}: Master user logging in as {user}",
                 ident=self._ident(self.master_passdb.name, master, request), user=user)
        return success(user)

    async def _check_password(self, db, kind, user, password, request, retry=True):
        if db is None:
            return self._fail(request, "login", user, "no passdb configured")
        try:
            cached = self.cache.get((kind, user))[0]
            entry = await self._passdb_lookup(db, kind, user)
        except PassdbError as err:
            return self._internal(request, db, user, err)
        if entry is None:
            return self._fail(request, db.name, user, "unknown user")
        refused = self._check_fields(entry, request)
        if refused:
            return self._fail(request, db.name, user, refused)
        if entry.password is None:
            if "nopassword" in entry.fields:
                return success(user)
            return self._fail(request, db.name, user, "No password in passdb")
        try:
            stored = schemes.parse(entry.password, entry.default_scheme or self._default_scheme)
            ok = await self._run_in_thread(schemes.verify, password, stored)
        except (schemes.SchemeError, schemes.SchemeUnavailable) as err:
            return self._internal(request, db, user, err)
        if ok:
            return success(user)
        if cached and retry:
            # The password may have changed since it was cached: ask the passdb again.
            self.cache.drop((kind, user))
            return await self._check_password(db, kind, user, password, request, retry=False)
        return self._fail(request, db.name, user, "Password mismatch")

    def _check_fields(self, entry, request):
        nets = entry.fields.get("allow_nets")
        if nets:
            try:
                allowed = _networks(nets.replace(",", " ").split())
            except ConfigError:
                allowed = []
            if not request.remote_ip or not _in_networks(request.remote_ip, allowed):
                return "allow_nets check failed: IP %s not in allowed networks" % (request.remote_ip or "(none)")
        if "nologin" in entry.fields:
            return "nologin: %s" % (entry.fields.get("reason") or "user may not log in")
        return None

    # -- credentials for non-plaintext mechanisms ------------------------

    async def credentials(self, login, scheme_name, request, mechanism):
        """Return :class:`Credentials` of ``login`` in ``scheme_name``.

        Raises:
            MechanismFailure: carrying the failure step (unknown user,
                unusable scheme, internal failure).
        """
        try:
            user = self._normalise(login)
        except usernames.UsernameError as err:
            raise MechanismFailure(self._fail(request, mechanism.lower(), login, str(err))) from None
        db = self.passdb
        try:
            entry = await self._passdb_lookup(db, "passdb", user)
        except PassdbError as err:
            raise MechanismFailure(self._internal(request, db, user, err)) from None
        if entry is None:
            raise MechanismFailure(self._fail(request, db.name, user, "unknown user"))
        refused = self._check_fields(entry, request)
        if refused:
            raise MechanismFailure(self._fail(request, db.name, user, refused))
        try:
            stored = None
            if entry.password is not None:
                stored = schemes.parse(entry.password, entry.default_scheme or self._default_scheme)
            if stored is not None and stored.scheme.plaintext:
                wanted = schemes.lookup(scheme_name)
                raw = await self._run_in_thread(wanted.generate, stored.raw())
            elif stored is not None and stored.scheme.name == scheme_name:
                raw = stored.raw()
            else:
                has = stored.label if stored is not None else "no password"
                reason = "%s needs a %s or plaintext password; user has %s" % (mechanism, scheme_name, has)
                raise MechanismFailure(self._fail(request, db.name, user, reason, always=True))
        except (schemes.SchemeError, schemes.SchemeUnavailable) as err:
            raise MechanismFailure(self._internal(request, db, user, err)) from None
        return Credentials(user, raw)

    # -- lookups ---------------------------------------------------------

    def _same_user(self, one, other):
        try:
            return self._normalise(one) == self._normalise(other)
        except usernames.UsernameError:
            return one == other

    def _normalise(self, login):
        return usernames.normalise(login, self.config["auth_username_format"], self.config["auth_default_realm"])

    async def _passdb_lookup(self, db, kind, user):
        hit, entry = self.cache.get((kind, user))
        if hit:
            return entry
        entry = await db.lookup(user)
        self.cache.put((kind, user), entry, entry.size() if entry is not None else 64)
        return entry

    async def lookup_user(self, user):
        """Return the :class:`UserInfo` for ``user`` from the userdb, or None when unknown.

        Raises:
            AuthTemporaryError: when the userdb cannot answer.
        """
        try:
            name = self._normalise(user)
        except usernames.UsernameError:
            return None
        if self.userdb is None:
            return None
        hit, fields = self.cache.get(("userdb", name))
        if not hit:
            try:
                fields = await self.userdb.lookup(name)
            except PassdbError as err:
                log.error("{ident}: {error}", ident="%s(%s)" % (self.userdb.name, name), error=err)
                raise AuthTemporaryError(str(err)) from None
            size = 64 + sum(len(k) + len(v) for k, v in fields.items()) if fields else 64
            self.cache.put(("userdb", name), fields, size)
        if fields is None:
            return None
        return self.user_info(name, fields)

    def user_info(self, user, fields):
        """Build a :class:`UserInfo` from userdb ``fields``, with ``mail_home``/``mail_location`` defaults."""
        fields = dict(fields)
        uid = fields.pop("uid", "")
        gid = fields.pop("gid", "")
        home = fields.pop("home", "") or usernames.expand(self.config["mail_home"], user)
        mail = fields.pop("mail", "") or usernames.expand(self.config["mail_location"], user)
        kind, colon, path = mail.partition(":")
        if colon and not home and path.rstrip("/").endswith("/Maildir") and "~" not in path:
            # No home given: the directory that holds the Maildir is the user's home.
            home = path.rstrip("/")[:-len("/Maildir")]
        if colon and home and (path == "~" or path.startswith("~/")):
            mail = "%s:%s%s" % (kind, home, path[1:])
        quota = parse_quota(fields)
        fields.pop("quota_bytes", None)
        return UserInfo(user, int(uid) if uid.isdigit() else -1, int(gid) if gid.isdigit() else -1,
                        home, mail, quota, fields)

    # -- logging ---------------------------------------------------------

    def _ident(self, driver, user, request):
        parts = [user or "?", request.remote_ip or ""]
        if request.session:
            parts.append("<%s>" % request.session)
        return "%s(%s)" % (driver, ",".join(parts))

    def _fail(self, request, driver, user, reason, always=False):
        """Log a client failure and return its step."""
        ident = self._ident(driver, user, request)
        if always or self.config["auth_verbose"]:
            log.info("{ident}: {reason}", ident=ident, reason=reason)
        else:
            log.debug("{ident}: {reason}", ident=ident, reason=reason)
        return failure("%s: %s" % (ident, reason), user=user)

    def _unexpected(self, request, where, user):
        """Log a bug (with its traceback) and return a temporary failure: never a permanent refusal."""
        ident = self._ident(where, user, request)
        log.failure("{ident}: unexpected error", ident=ident)
        return failure("%s: internal failure: unexpected error" % ident, user=user, temporary=True)

    def _internal(self, request, db, user, error):
        """Log an internal failure and return a temporary failure step."""
        ident = self._ident(db.name, user, request)
        log.error("{ident}: {error}", ident=ident, error=error)
        return failure("%s: internal failure: %s" % (ident, error), user=user, temporary=True)


class _Backend:
    """What one conversation's mechanism may ask of the service (see mechs/base.py)."""

    def __init__(self, service, request, mechanism):
        self._service = service
        self._request = request
        self._mechanism = mechanism
        self.hostname = service.config["myhostname"]

    async def verify_plain(self, authcid, password, authzid=""):
        return await self._service._verify_plain(authcid, password, authzid, self._request)

    async def credentials(self, authcid, scheme):
        return await self._service.credentials(authcid, scheme, self._request, self._mechanism)

    def succeed(self, user, data=b""):
        return success(user, data)

    def fail(self, user, reason, temporary=False):
        if temporary:
            ident = self._service._ident(self._mechanism.lower(), user, self._request)
            log.error("{ident}: {reason}", ident=ident, reason=reason)
            return failure("%s: %s" % (ident, reason), user=user, temporary=True)
        return self._service._fail(self._request, self._mechanism.lower(), user, reason)


class SASLSession:
    """One SASL conversation; call :meth:`step` until the answer is not ``continue``."""

    def __init__(self, service, mechanism, request):
        self.mechanism = mechanism.name
        self.request = request
        self._service = service
        self._conversation = mechanism.factory(_Backend(service, request, mechanism.name))
        self._done = False

    async def step(self, response):
        """Feed the client's decoded ``response`` (None: no initial response); return a :class:`SASLStep`."""
        if self._done:
            return failure("conversation already finished")
        try:
            step = await self._conversation.step(response)
        except MechanismFailure as failed:
            step = failed.step
        except Exception:
            step = self._service._unexpected(self.request, self.mechanism.lower(), "")
        if step.kind == "continue":
            return step
        self._done = True
        return await self._service.finish(step, self.request)


def auth_service(ctx):
    """Return the process-wide :class:`AuthService` of a :class:`~mailstack.app.ServerContext`."""
    return ctx.shared("auth", lambda: AuthService(ctx.config, ctx.reactor))


