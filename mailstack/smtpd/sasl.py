# -*- test-case-name: tests.smtpd.test_auth_before_tls -*-
"""SMTP AUTH (RFC 4954) on top of the auth layer's SASL sessions.

A mixin of :class:`mailstack.smtpd.protocol.SMTPServerProtocol`.

AUTH is offered and accepted only with ``smtpd_sasl_auth_enable = yes``,
and, with ``smtpd_tls_auth_only = yes``, only after STARTTLS; the
mechanisms are those ``AuthService.mechanisms`` allows on this connection
(plaintext ones need TLS or a trusted network: Dovecot's
``disable_plaintext_auth``).  An initial response is accepted (``=`` for
an empty one), ``*`` cancels (``501 5.7.0``), undecodable base64 is
``501 5.5.2``, a failure ``535 5.7.8`` (the reason goes to the log only:
``warning: host[ip]: SASL PLAIN authentication failed: reason``), a
temporary failure of the passdb ``454 4.7.0``.  The failure delay is the
auth service's.  Credentials are never logged.

Parameters read: smtpd_sasl_auth_enable, smtpd_tls_auth_only.
"""

import base64
import binascii

from twisted.logger import Logger

log = Logger(namespace="mailstack.smtpd")


class SASLCommands:
    """AUTH for :class:`~mailstack.smtpd.protocol.SMTPServerProtocol`."""

    def smtp_auth(self, arg):
        if not self.config["smtpd_sasl_auth_enable"] or self.server.auth is None:
            return (503, "5.5.1", "Error: authentication not enabled")
        if self.config["smtpd_tls_auth_only"] and not self.tls:
            return (503, "5.5.1", "Error: authentication not enabled")
        if not self.helo:
            return (503, "5.5.1", "Error: send HELO/EHLO first")
        if self.sasl_username:
            return (503, "5.5.1", "Error: already authenticated")
        if self.sender is not None:
            return (503, "5.5.1", "Error: MAIL transaction in progress")
        words = arg.split()
        if not words or len(words) > 2:
            return (501, "5.5.4", "Syntax: AUTH mechanism")
        mechanism = words[0].upper()
        if mechanism not in self._auth_mechanisms():
            return (504, "5.5.4", "Unsupported authentication mechanism")
        from mailstack.auth.service import AuthRequest, UnknownMechanism
        request = AuthRequest(service="smtp", remote_ip=self.client_address,
                              local_ip=self.transport.getHost().host, secure=self._secure(),
                              session=self.service)
        try:
            self._sasl = self.server.auth.start(mechanism, request)
        except UnknownMechanism:
            return (504, "5.5.4", "Unsupported authentication mechanism")
        self._sasl_mechanism = mechanism
        response = None
        if len(words) == 2:
            if words[1] == "=":
                response = b""
            elif words[1] == "*":
                self._sasl = None
                return (501, "5.7.0", "Authentication aborted")
            else:
                try:
                    response = base64.b64decode(words[1], validate=True)
                except (binascii.Error, ValueError):
                    self._sasl = None
                    return (501, "5.5.2", "Cannot decode response")
        return self._auth_step(response)

    async def _auth_step(self, response):
        step = await self._sasl.step(response)
        if step.kind == "continue":
            self._mode = "auth"
            return (334, None, base64.b64encode(step.challenge).decode("ascii"))
        if step.kind == "success" and step.challenge:
            # RFC 4954 §4: SMTP has no "additional data with success"; the
            # data (SCRAM's server signature) goes as one more 334 challenge,
            # the client answers with an empty line, then 235.
            self._mode = "auth"
            self._sasl_success = step
            return (334, None, base64.b64encode(step.challenge).decode("ascii"))
        self._mode = "command"
        self._sasl = None
        if step.kind == "success":
            self.sasl_username, self.sasl_method = step.user, self._sasl_mechanism
            return (235, "2.7.0", "Authentication successful")
        log.warn("{client}: SASL {mech} authentication failed: {reason}", client=self.peer,
                 mech=self._sasl_mechanism, reason=step.reason or "authentication failure", service=self.service)
        if step.temporary:
            return (454, "4.7.0", "Temporary authentication failure")
        return (535, "5.7.8", "Error: authentication failed: authentication failure")

    async def _auth_response(self, line):
        success, self._sasl_success = self._sasl_success, None
        if line.strip() == b"*":
            self._mode = "command"
            self._sasl = None
            self._count("auth", False)
            return (501, "5.7.0", "Authentication aborted")
        if success is not None:
            # The client's answer to the server's final data (it should be empty).
            self._mode = "command"
            self._sasl = None
            self._count("auth", True)
            self.sasl_username, self.sasl_method = success.user, self._sasl_mechanism
            return (235, "2.7.0", "Authentication successful")
        try:
            response = base64.b64decode(line.strip(), validate=True)
        except (binascii.Error, ValueError):
            self._mode = "command"
            self._sasl = None
            self._count("auth", False)
            return (501, "5.5.2", "Cannot decode response")
        result = await self._auth_step(response)
        if result[0] != 334:
            self._count("auth", result[0] == 235)
        return result

    def _auth_mechanisms(self):
        if not self.config["smtpd_sasl_auth_enable"] or self.server.auth is None or self.sasl_username:
            return []
        if self.config["smtpd_tls_auth_only"] and not self.tls:
            return []
        return self.server.auth.mechanisms(self._secure())

    def _secure(self):
        return self.server.auth.is_secure_connection(self.client_address, self.tls)
