"""Authentication, the way Dovecot splits it.

- :mod:`mailstack.auth.mechs`: SASL mechanisms (how client and server talk);
- :mod:`mailstack.auth.schemes`: password schemes (how a password is stored);
- :mod:`mailstack.auth.passdb` / :mod:`mailstack.auth.userdb`: where
  passwords and user information come from;
- :mod:`mailstack.auth.service`: the one :class:`~mailstack.auth.service.AuthService`
  every protocol uses, and :mod:`mailstack.auth.cred` its Twisted cred seam.
"""
