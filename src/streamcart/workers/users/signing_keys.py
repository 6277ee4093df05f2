"""Where the token signing keys come from: the environment or files, never Redis.

* ``STREAMCART_TOKEN_SECRET`` (the secret itself) or ``STREAMCART_TOKEN_SECRET_FILE``
  (a file holding it, as Kubernetes mounts a Secret): the current key, which
  signs and verifies. Exactly one of the two. ``STREAMCART_JWT_SECRET``, the
  old name, is still read when neither is set (deprecated: a warning says so).
* ``STREAMCART_TOKEN_SECRET_PREVIOUS`` or ``STREAMCART_TOKEN_SECRET_PREVIOUS_FILE``:
  the key being retired, which only verifies. Optional; a ``..._PREVIOUS_FILE``
  that does not exist means no previous key (a Secret without that entry
  mounts no file).

A file holds the secret alone; trailing line breaks are stripped, nothing
else. A missing, unreadable or empty file, or no current secret at all, is a
:class:`ConfigurationError`: a process that signs or verifies tokens does
not start without its keys (fail closed). The generated secret of the
embedded demo (:mod:`streamcart.demo`) reaches the processes it starts
through ``STREAMCART_TOKEN_SECRET`` too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from streamcart.errors import ConfigurationError
from streamcart.workers.users.tokens import SigningKey, SigningKeys

log = logging.getLogger("streamcart.users")
SECRET_ENV = "STREAMCART_TOKEN_SECRET"
SECRET_FILE_ENV = "STREAMCART_TOKEN_SECRET_FILE"
PREVIOUS_ENV = "STREAMCART_TOKEN_SECRET_PREVIOUS"
PREVIOUS_FILE_ENV = "STREAMCART_TOKEN_SECRET_PREVIOUS_FILE"
DEPRECATED_SECRET_ENV = "STREAMCART_JWT_SECRET"


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names a current secret (valid or not)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in (SECRET_ENV, SECRET_FILE_ENV, DEPRECATED_SECRET_ENV))


def from_environment(environ: Mapping[str, str] | None = None) -> SigningKeys:
    """The keys the environment gives (``os.environ`` by default).

    Raises:
        ConfigurationError: no current secret, both a secret and a file for
            the same key, a file that is missing, unreadable or empty, or a
            secret shorter than 32 bytes; the message names the variable.
    """
    env = os.environ if environ is None else environ
    current = _secret(env, SECRET_ENV, SECRET_FILE_ENV, optional_file=False)
    if current is None and env.get(DEPRECATED_SECRET_ENV):
        log.warning("%s is deprecated: set %s instead", DEPRECATED_SECRET_ENV, SECRET_ENV)
        current = _key(DEPRECATED_SECRET_ENV, env[DEPRECATED_SECRET_ENV].encode())
    if current is None:
        raise ConfigurationError(
            f"no token signing secret: set {SECRET_ENV} to a random secret of at least "
            f"32 bytes (e.g. `openssl rand -base64 48`), or {SECRET_FILE_ENV} to a file "
            "holding one; `streamcart up --demo` generates one for the demo"
        )
    previous = _secret(env, PREVIOUS_ENV, PREVIOUS_FILE_ENV, optional_file=True)
    return SigningKeys(current, previous)


def _secret(
    env: Mapping[str, str], value_name: str, file_name: str, *, optional_file: bool
) -> SigningKey | None:
    value, path = env.get(value_name), env.get(file_name)
    if value and path:
        raise ConfigurationError(f"set {value_name} or {file_name}, not both")
    if value:
        return _key(value_name, value.encode())
    if path:
        return _from_file(file_name, Path(path), optional=optional_file)
    return None


def _from_file(name: str, path: Path, *, optional: bool) -> SigningKey | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if optional:
            return None
        raise ConfigurationError(f"{name}: no file {str(path)!r}") from None
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read {str(path)!r}: {exc.strerror}") from None
    secret = raw.rstrip(b"\r\n")
    if not secret and optional:
        # A previous key retired by emptying its Secret entry, not deleting it.
        log.warning("%s: the file %r is empty; no previous key", name, str(path))
        return None
    if not secret:
        raise ConfigurationError(f"{name}: the file {str(path)!r} is empty")
    return _key(f"{name} ({path})", secret)


def _key(source: str, secret: bytes) -> SigningKey:
    try:
        return SigningKey(secret)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
