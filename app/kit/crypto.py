"""Secrets at rest: creators' codes and advertisers' access tokens.

Encryption is Fernet (AES-128-CBC + HMAC-SHA256, authenticated) through `MultiFernet`: the first key in
ENCRYPTION_KEYS encrypts, every key decrypts, so keys rotate by prepending a new one.

A code is found again by a keyed fingerprint (HMAC-SHA256 under a key derived from each encryption key), never
by its clear text. Fingerprints are computed under every configured key, so a lookup still finds rows written
before a rotation.

Values handed to callers that must come back unchanged (pagination cursors) are signed (itsdangerous, under
another key derived from each encryption key): opaque to callers and tamper-evident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadData, URLSafeSerializer

from app.kit.errors import ProblemError

_FINGERPRINT_CONTEXT = b"spark-authorizations/fingerprint/v1"
_SIGNING_CONTEXT = b"spark-authorizations/signing/v1"


class SignatureInvalid(Exception):
    """A signed value was altered, or was not signed under any configured key."""


class DecryptionFailed(ProblemError):
    """A stored secret could not be decrypted with any configured key: a key was removed from ENCRYPTION_KEYS
    while values it encrypted were still stored. The operator's mistake, not the caller's: hence 500."""

    status = 500
    reason = "stored_secret_unreadable"
    title = "A stored secret cannot be decrypted with the configured ENCRYPTION_KEYS"


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        self._first = Fernet(keys[0].encode())
        self._fingerprint_keys = [_derive_key(key, _FINGERPRINT_CONTEXT) for key in keys]
        # itsdangerous signs with the last key and verifies with all of them: newest last.
        self._signer = URLSafeSerializer([_derive_key(key, _SIGNING_CONTEXT) for key in reversed(keys)], salt="v1")

    def encrypt(self, clear: str) -> bytes:
        return self._fernet.encrypt(clear.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise DecryptionFailed("no configured key decrypts this value") from exc

    def decrypt_under_first_key(self, token: bytes) -> str | None:
        """The clear text if the first key encrypted `token`; None if an older key did, or none of them.

        What tells a value that needs re-encrypting from one that does not: Fernet tokens do not name their key,
        and trying the first key alone is one HMAC check (plus the decryption, when it is the first key's).
        """
        try:
            return self._first.decrypt(token).decode()
        except InvalidToken:
            return None

    def rotate(self, token: bytes) -> bytes:
        """`token` re-encrypted under the first key (`MultiFernet.rotate`): the same clear text and timestamp.
        DecryptionFailed if no configured key decrypts it."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise DecryptionFailed("no configured key decrypts this value") from exc

    def fingerprint(self, clear: str) -> bytes:
        """The fingerprint under the current (first) key: what new rows store."""
        return _hmac(self._fingerprint_keys[0], clear)

    def fingerprints(self, clear: str) -> list[bytes]:
        """The fingerprints under every configured key: what a lookup matches against."""
        return [_hmac(key, clear) for key in self._fingerprint_keys]

    def sign(self, value: object, *, purpose: str) -> str:
        """`value` (JSON-serialisable) as a URL-safe token only this service can have made, for `purpose` only."""
        return self._signer.dumps(value, salt=purpose)

    def unsign(self, token: str, *, purpose: str) -> object:
        """The value `sign` was given, or SignatureInvalid if the token was altered or made for something else."""
        try:
            return self._signer.loads(token, salt=purpose)
        except BadData as exc:
            raise SignatureInvalid() from exc


def hash_api_key(key: str) -> bytes:
    """The unkeyed SHA-256 API keys were stored under before they were keyed: only to recognise those keys once."""
    return hashlib.sha256(key.encode()).digest()


class KeyHasher:
    """API keys are stored and looked up by an HMAC-SHA256 under a server secret (API_KEY_SECRET): a copy of the
    database alone does not let anyone test guesses of a weak key, the bootstrap key an operator chose included."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"spark-authorizations/api-key/v1" + secret.encode()).digest()

    def hash(self, key: str) -> bytes:
        return hmac.new(self._key, key.encode(), hashlib.sha256).digest()


def secret_hint(secret: str) -> str:
    """A short hint a person can match against what they pasted, never enough to use."""
    return "…" + secret[-4:] if len(secret) >= 12 else "…"


def _derive_key(key: str, context: bytes) -> bytes:
    """A key for one use only, derived from an encryption key: one leaked use reveals nothing of the others."""
    raw = base64.urlsafe_b64decode(key.encode())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(raw)


def _hmac(key: bytes, clear: str) -> bytes:
    return hmac.new(key, clear.encode(), hashlib.sha256).digest()
