# -*- test-case-name: tests.pop3d.test_login -*-
"""POP3 AUTHORIZATION state: USER/PASS, AUTH (SASL), APOP, STLS, and the login itself.

Every credential goes to the auth service (:mod:`mailstack.auth.service`):
USER/PASS through ``verify_plain``, AUTH through the SASL mechanisms it
offers.  Failures are delayed by the auth service, so this module only
awaits.

Plaintext logins (USER/PASS and the mechanisms the auth service calls
plaintext) are refused on a connection that is neither TLS nor counted
secure (loopback, ``login_trusted_networks``) unless
``disable_plaintext_auth = no``; CAPA then offers neither USER nor those
mechanisms, and STLS is how to get them (RFC 2595 §4).

APOP (RFC 1939 §7) is offered only with ``pop3d_enable_apop = yes`` and a
passdb that can hand out credentials: the greeting then carries a
timestamp, and the digest is checked against the password the auth service
gives in the ``PLAIN`` scheme, which it does only for users whose password
is stored in plaintext (others fail with the auth service's "APOP needs a
PLAIN or plaintext password" log line).  APOP sends no password, so it is
allowed on insecure connections.

After a successful authentication the user is looked up in the userdb, the
maildrop is opened and locked (:mod:`.lock`): a mailbox locked by another
POP3 session gives ``-ERR [IN-USE]`` (RFC 2449 §8.1.2) and the session
stays in AUTHORIZATION.

Response codes: ``[AUTH]`` for bad credentials and refused plaintext
logins, ``[SYS/TEMP]`` for failures of ours (RFC 3206), ``[IN-USE]``.
"""

import base64
import binascii
import hashlib
import hmac
import os
import time

from twisted.logger import Logger

from mailstack.auth.mechs.base import MechanismFailure
from mailstack.auth.request import failure, success
from mailstack.auth.service import AuthRequest, UnknownMechanism
from mailstack.pop3d.lock import MailboxInUse

log = Logger(namespace="mailstack.pop3d")

PLAINTEXT_DISALLOWED = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
AUTH_FAILED = "-ERR [AUTH] Authentication failed."
AUTH_TEMPFAIL = "-ERR [SYS/TEMP] Temporary authentication failure."

# Close the connection after this many failed logins (each one already delayed by the auth service).
MAX_AUTH_FAILURES = 3


class AuthorizationCommands:
    """The AUTHORIZATION-state half of :class:`~mailstack.pop3d.protocol.POP3Server`."""

    def login_init(self):
        self._user_arg = None
        self._sasl = None
        self._sasl_mechanism = ""
        self._sasl_success_data = False
        self._pending_step = None
        self._last_method = ""
        self._last_user = ""
        self.apop_timestamp = ""
        passdb = getattr(self.factory.auth, "passdb", None)
        if self.settings.apop and passdb is not None and passdb.credentials_lookup:
            # RFC 1939 §7: a timestamp unique to this greeting.
            self.apop_timestamp = "<%d.%s.%d@%s>" % (os.getpid(), os.urandom(6).hex(), int(time.time()),
                                                     self.settings.hostname)

    # -- helpers ------------------------------------------------------------

    def plaintext_allowed(self):
        """True when USER/PASS may be used on this connection now."""
        return self.secure or self.settings.plaintext_insecure

    def auth_request(self):
        return AuthRequest("pop3", self.rip, self.lip, self.secure, self.session)

    def _security_words(self):
        if self.tls:
            return ", TLS"
        return ", secured" if self.secure else ""

    def _addresses(self):
        return "rip=%s, lip=%s%s" % (self.rip, self.lip, self._security_words())

    # -- USER / PASS (RFC 1939 §7) ---------------------------------------------

    def do_USER(self, args):
        if not self.plaintext_allowed():
            self.send(PLAINTEXT_DISALLOWED)
            return None
        if not args.strip():
            self.send("-ERR USER: missing user name.")
            return None
        self._user_arg = args.strip()
        self.send("+OK")
        return None

    def do_PASS(self, args):
        if not self.plaintext_allowed():
            self.send(PLAINTEXT_DISALLOWED)
            return None
        if self._user_arg is None:
            self.send("-ERR No user name given (send USER first).")
            return None
        user, self._user_arg = self._user_arg, None
        return self._pass(user, args)

    async def _pass(self, user, password):
        self._last_method, self._last_user = "PLAIN", user
        step = await self.factory.auth.verify_plain(user, password, self.auth_request())
        await self._finish_auth(step, "PLAIN", user)

    # -- APOP ------------------------------------------------------------------

    def do_APOP(self, args):
        if not self.apop_timestamp:
            self.send("-ERR [AUTH] APOP is not enabled on this server; use USER/PASS or AUTH.")
            return None
        words = args.split()
        if len(words) != 2:
            self.send("-ERR APOP: user name and digest expected.")
            return None
        return self._apop(words[0], words[1].lower())

    async def _apop(self, user, digest):
        auth, request = self.factory.auth, self.auth_request()
        self._last_method, self._last_user = "APOP", user
        try:
            credentials = await auth.credentials(user, "PLAIN", request, "APOP")
        except MechanismFailure as failed:
            step = failed.step
        else:
            password = credentials.raw
            if isinstance(password, str):
                password = password.encode("utf-8")
            expected = hashlib.md5(self.apop_timestamp.encode("ascii") + password).hexdigest()
            if hmac.compare_digest(expected, digest):
                step = success(credentials.user)
            else:
                step = failure("apop(%s,%s): Password mismatch" % (user, self.rip), user=user)
        await self._finish_auth(await auth.finish(step, request), "APOP", user)

    # -- AUTH (RFC 5034) -------------------------------------------------------

    def do_AUTH(self, args):
        auth = self.factory.auth
        words = args.split()
        if not words:
            # Without a mechanism: list them (the pre-RFC 5034 form many clients still send).
            self.send_multiline("+OK", [m.encode("ascii") for m in auth.mechanisms(self.secure)])
            return None
        if len(words) > 2:
            self.send("-ERR AUTH: too many arguments.")
            return None
        mechanism = words[0].upper()
        if mechanism not in auth.mechanisms(self.secure):
            if mechanism in auth.mechanisms(True):
                self.send(PLAINTEXT_DISALLOWED)
            else:
                self.send("-ERR [AUTH] Unsupported authentication mechanism.")
            return None
        try:
            session = auth.start(mechanism, self.auth_request())
        except UnknownMechanism:
            self.send("-ERR [AUTH] Unsupported authentication mechanism.")
            return None
        response = None
        if len(words) == 2:
            response = self._decode(words[1])
            if response is None:
                self.send("-ERR [AUTH] Invalid base64 data in initial response.")
                return None
        self._sasl, self._sasl_mechanism = session, mechanism
        self._last_method, self._last_user = mechanism, ""
        return self._sasl_step(response)

    @staticmethod
    def _decode(text):
        if text == "=":  # RFC 5034 §4: an empty initial response
            return b""
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None

    def sasl_pending(self):
        """True while an AUTH exchange waits for the client's next response line."""
        return self._sasl is not None

    def sasl_response(self, line):
        """Handle one client line of an AUTH exchange; return an awaitable or None."""
        if self._sasl_success_data:
            # The client acknowledged the final server data (RFC 5034 §4); any answer will do.
            self._sasl_success_data = False
            self._sasl = None
            return self._logged_in_after_sasl()
        if line.strip() == b"*":
            self._sasl = None
            self.send("-ERR [AUTH] Authentication aborted by client.")
            return None
        try:
            response = self._decode(line.decode("ascii").strip())
        except UnicodeDecodeError:
            response = None
        if response is None:
            self._sasl = None
            self.send("-ERR [AUTH] Invalid base64 data in continued response.")
            return None
        return self._sasl_step(response)

    async def _sasl_step(self, response):
        step = await self._sasl.step(response)
        if step.kind == "continue":
            self.send(b"+ " + base64.b64encode(step.challenge))
            return
        if step.kind == "success" and step.challenge:
            # Additional data with success goes as one more challenge (RFC 5034 §4).
            self._pending_step = step
            self._sasl_success_data = True
            self.send(b"+ " + base64.b64encode(step.challenge))
            return
        self._sasl = None
        await self._finish_auth(step, self._sasl_mechanism, step.user)

    async def _logged_in_after_sasl(self):
        step, self._pending_step = self._pending_step, None
        await self._finish_auth(step, self._sasl_mechanism, step.user)

    # -- STLS (RFC 2595 §4) ----------------------------------------------------

    def do_STLS(self, args):
        if self.tls:
            self.send("-ERR TLS is already active.")
            return None
        if self.settings.tls_options is None:
            self.send("-ERR TLS support isn't enabled.")
            return None
        self.send("+OK Begin TLS negotiation now.")
        # RFC 2595 §3.1: nothing the client sent before the handshake may be acted upon.
        self.discard_input()
        self._user_arg = None
        self._direct = False  # from now on every byte goes through the TLS layer
        self.transport.startTLS(self.settings.tls_options)
        self.tls = True
        self.update_security()
        return None

    # -- the login ---------------------------------------------------------------

    async def _finish_auth(self, step, method, user):
        if not step.ok:
            self._auth_failures += 1
            if step.temporary:
                log.error("pop3-login: Temporary authentication failure: user=<{user}>, method={method}, "
                          "{addresses}: {reason}", user=step.user or user, method=method,
                          addresses=self._addresses(), reason=step.reason, service=self.settings.service)
                self.send(AUTH_TEMPFAIL)
            else:
                self.send(AUTH_FAILED)
            if self._auth_failures >= MAX_AUTH_FAILURES:
                self.close()
            return
        await self.open_session(step.user, method)

    async def open_session(self, user, method):
        """Look ``user`` up, open and lock the maildrop, enter TRANSACTION; reply either way."""
        factory = self.factory
        info = await factory.auth.lookup_user(user)
        if info is None:
            log.error("pop3({user}): user not found in userdb after successful authentication",
                      user=user, service=self.settings.service)
            self.send(AUTH_TEMPFAIL)
            return
        try:
            drop = await factory.mailboxes.open(info)
        except Exception:
            log.failure("pop3({user}): cannot open INBOX", user=user, service=self.settings.service)
            self.send("-ERR [SYS/TEMP] Couldn't open INBOX. Refer to server log for more information.")
            return
        if self._closing:
            drop.close()
            return
        try:
            lock = factory.locks.acquire(drop.directory)
        except MailboxInUse as err:
            drop.close()
            self.log_event("pop3({user}): Couldn't open INBOX: {reason}, {addresses}",
                           user=user, reason=err, addresses=self._addresses())
            self.send("-ERR [IN-USE] Mailbox is locked by another POP3 session.")
            return
        except OSError as err:
            drop.close()
            log.error("pop3({user}): cannot lock INBOX: {error}", user=user, error=err,
                      service=self.settings.service)
            self.send("-ERR [SYS/TEMP] Couldn't lock INBOX. Refer to server log for more information.")
            return
        self.user = user
        self.state = "TRANSACTION"
        self.enter_transaction(drop, lock)
        self.log_event("pop3-login: Login: user=<{user}>, method={method}, {addresses}",
                       user=user, method=method, addresses=self._addresses())
        self.send("+OK Logged in.")

    # -- logs ----------------------------------------------------------------------

    def log_login_abort(self):
        """Log a connection that ended before a login (Dovecot's login-process lines)."""
        secs = int(time.monotonic() - self._started)
        if self._auth_failures:
            self.log_event("pop3-login: Disconnected (auth failed, {count} attempts in {secs} secs): "
                           "user=<{user}>, method={method}, {addresses}",
                           count=self._auth_failures, secs=secs, user=self._last_user,
                           method=self._last_method, addresses=self._addresses())
        else:
            self.log_event("pop3-login: Disconnected (no auth attempts in {secs} secs): user=<>, {addresses}",
                           secs=secs, addresses=self._addresses())
