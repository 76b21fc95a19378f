# -*- test-case-name: tests.auth.test_schemes -*-
"""crypt(3)-family password schemes, backed by passlib.

- ``CRYPT``: any crypt(3) string the C library would accept: DES
  (``ab01234567890``), ``$1$`` MD5, ``$5$`` SHA-256, ``$6$`` SHA-512,
  ``$2y$``/``$2b$``/``$2a$`` bcrypt.  New hashes are ``$2y$05$`` bcrypt,
  as Dovecot 2.3's ``doveadm pw -s CRYPT`` writes.
- ``MD5-CRYPT`` (``$1$``), ``SHA256-CRYPT`` (``$5$``), ``SHA512-CRYPT``
  (``$6$``): Dovecot writes 5000 rounds, which the string leaves implicit.
- ``DES-CRYPT``: traditional 13-character DES crypt (only the first 8
  characters of the password count: for old files only).
- ``BLF-CRYPT``: bcrypt, ``$2y$`` with cost 5 (Dovecot's default).
- ``ARGON2I`` / ``ARGON2ID``: PHC strings (``$argon2id$v=19$m=65536,t=3,p=1$...``);
  Dovecot's defaults are m=32768,t=4 for ARGON2I and m=65536,t=3 for ARGON2ID.

Python 3.13 dropped the ``crypt`` module, so nothing here calls the C
library: passlib implements every algorithm (bcrypt through the ``bcrypt``
package, Argon2 through ``argon2-cffi``).  A missing backend makes the
scheme say which package to install instead of failing obscurely.
"""

from passlib import exc as passlib_exc
from passlib.hash import argon2, bcrypt, des_crypt, md5_crypt, sha256_crypt, sha512_crypt


class SchemeUnavailable(Exception):
    """A scheme whose backend library is not installed."""


def _backend(handler, package):
    try:
        handler.get_backend()
    except passlib_exc.MissingBackendError:
        raise SchemeUnavailable("support not installed: pip install %s" % package) from None


def _verify_with(handlers):
    def verify(password, raw):
        for handler, package in handlers:
            if handler.identify(raw):
                _backend(handler, package)
                try:
                    return handler.verify(password, raw)
                except (ValueError, TypeError):
                    return False
        return False
    return verify


def _generate_with(handler, package):
    def generate(password):
        _backend(handler, package)
        return handler.hash(password)
    return generate


_MD5 = md5_crypt
_SHA256 = sha256_crypt.using(rounds=5000)
_SHA512 = sha512_crypt.using(rounds=5000)
_BCRYPT = bcrypt.using(rounds=5, ident="2y")
_ARGON2I = argon2.using(type="I", memory_cost=32768, time_cost=4, parallelism=1)
_ARGON2ID = argon2.using(type="ID", memory_cost=65536, time_cost=3, parallelism=1)

_CRYPT_FAMILY = [(md5_crypt, ""), (sha256_crypt, ""), (sha512_crypt, ""), (bcrypt, "bcrypt"), (des_crypt, "")]

crypt_verify = _verify_with(_CRYPT_FAMILY)
crypt_generate = _generate_with(_BCRYPT, "bcrypt")
md5_crypt_verify = _verify_with([(md5_crypt, "")])
md5_crypt_generate = _generate_with(_MD5, "")
sha256_crypt_verify = _verify_with([(sha256_crypt, "")])
sha256_crypt_generate = _generate_with(_SHA256, "")
sha512_crypt_verify = _verify_with([(sha512_crypt, "")])
sha512_crypt_generate = _generate_with(_SHA512, "")
des_crypt_verify = _verify_with([(des_crypt, "")])
des_crypt_generate = _generate_with(des_crypt, "")
blf_crypt_verify = _verify_with([(bcrypt, "bcrypt")])
blf_crypt_generate = _generate_with(_BCRYPT, "bcrypt")


def _argon2_verify(kind):
    marker = "$argon2%s$" % kind

    def verify(password, raw):
        if not raw.startswith(marker):
            return False
        return _verify_with([(argon2, "argon2-cffi")])(password, raw)
    return verify


argon2i_verify = _argon2_verify("i")
argon2i_generate = _generate_with(_ARGON2I, "argon2-cffi")
argon2id_verify = _argon2_verify("id")
argon2id_generate = _generate_with(_ARGON2ID, "argon2-cffi")
