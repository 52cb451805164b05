"""API keys: `ck_` keys stored only as keyed hashes, found by a short non-secret lookup, compared in constant time.

A key is `ck_` + 8 lookup characters + 32 secret characters + a 6-character CRC32 checksum, all base62 (about
190 random bits). The lookup finds the key's record (it is not secret: it is shown in `cocina keys list`); the
whole key is hashed with HMAC-SHA256 under the server's secret and compared with `hmac.compare_digest`, so the
database alone does not let anyone check guesses offline (an unsalted SHA-256, as LiteLLM stores, would). The
checksum lets a secrets scanner (ours included) tell a real cocina key from random text without a database, as
GitHub's tokens do.

A key has a stable id (`key_…`) that survives rotation: `rotate` issues a new secret under the same id, and the
old one keeps working for a grace period if asked.
"""

from __future__ import annotations

import base64
import fnmatch
import hmac
import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from cocina.store import KeyRecord, Store

PREFIX = "ck_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LOOKUP_LEN = 8
SECRET_LEN = 32
CHECK_LEN = 6
KEY_LEN = len(PREFIX) + LOOKUP_LEN + SECRET_LEN + CHECK_LEN
SCOPES = ("predict", "push", "deploy", "admin")
DEFAULT_SCOPES = ("predict",)


class KeyError_(ValueError):
    """A key operation that cannot be done (unknown key, bad option); the message says why."""


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, r = divmod(value, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECK_LEN)


def new_key_text() -> str:
    """A fresh key: `ck_` + lookup + secret + checksum."""
    body = _random(LOOKUP_LEN) + _random(SECRET_LEN)
    return PREFIX + body + _checksum(body)


def parse_key(text: str) -> str | None:
    """The lookup of a well-formed key (checksum included), or None."""
    if len(text) != KEY_LEN or not text.startswith(PREFIX):
        return None
    body, check = text[len(PREFIX) : -CHECK_LEN], text[-CHECK_LEN:]
    if any(c not in _ALPHABET for c in body) or not hmac.compare_digest(_checksum(body), check):
        return None
    return body[:LOOKUP_LEN]


def looks_like_key(text: str) -> bool:
    """Whether `text` is a cocina key (its checksum holds): for the secrets scanner."""
    return parse_key(text) is not None


def display(lookup: str) -> str:
    """How a key is shown after creation: its prefix and lookup only."""
    return f"{PREFIX}{lookup}…"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an API key (its stable id, name, model patterns, scopes and limits)."""

    id: str
    name: str
    models: tuple[str, ...] = ()
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    key: KeyRecord | None = None

    def allows_model(self, model: str) -> bool:
        """Whether the key may use `model` (`owner/name`); no patterns: every model."""
        return not self.models or any(fnmatch.fnmatchcase(model, p) for p in self.models)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


_REASONS = {
    "missing": "You did not pass an API key.",
    "malformed": "Invalid API key.",
    "unknown": "Invalid API key.",
    "revoked": "This API key has been revoked.",
    "expired": "This API key has expired.",
}


def failure_message(reason: str) -> str:
    """The message a client sees for a refusal (an unknown and a malformed key read the same)."""
    return _REASONS.get(reason, "Invalid API key.")


class KeyHasher:
    """Keyed hashes of API keys (HMAC-SHA256 under a secret of the server's)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def hash(self, key_text: str) -> bytes:
        return hmac.new(self._secret, key_text.encode(), "sha256").digest()


def new_key_id() -> str:
    return "key_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


def parse_duration(text: str) -> float:
    """`30d`, `12h`, `90m`, `3600s` (or plain seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
    text = text.strip().lower()
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise KeyError_(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)") from None
    if value <= 0:
        raise KeyError_(f"a duration must be positive: {text!r}")
    return value


class Keys:
    """Creating, rotating, revoking, listing and checking keys kept in a `Store`."""

    def __init__(self, store: Store, hasher: KeyHasher) -> None:
        self.store = store
        self.hasher = hasher
        self.on_created: Callable[[KeyRecord], None] | None = None  # told of each key this process creates

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        scopes: list[str] | None = None,
        expires_in_s: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        monthly_tokens: int | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key; returns its record and the key itself (shown once, never stored)."""
        scopes = list(scopes or DEFAULT_SCOPES)
        bad = [s for s in scopes if s not in SCOPES]
        if bad:
            raise KeyError_(f"unknown scope {bad[0]!r}; scopes are {', '.join(SCOPES)}")
        for limit, value in (("rpm", rpm), ("tpm", tpm), ("monthly-tokens", monthly_tokens)):
            if value is not None and value < 1:
                raise KeyError_(f"--{limit} must be at least 1, got {value}")
        if not name.strip():
            raise KeyError_("a key needs a name")
        now = time.time()
        for _ in range(8):  # a lookup collision is astronomically rare; try again rather than fail
            text = new_key_text()
            rec = KeyRecord(
                id=new_key_id(),
                name=name.strip(),
                lookup=text[len(PREFIX) : len(PREFIX) + LOOKUP_LEN],
                secret_hash=self.hasher.hash(text),
                models=list(models or []),
                scopes=scopes,
                rpm=rpm,
                tpm=tpm,
                monthly_tokens=monthly_tokens,
                created_at=now,
                expires_at=now + expires_in_s if expires_in_s is not None else None,
            )
            if self.store.insert_key(rec):
                if self.on_created is not None:
                    self.on_created(rec)
                return rec, text
        raise KeyError_("could not create a unique key; try again")

    def get(self, key_id: str) -> KeyRecord:
        rec = self.store.get_key(key_id)
        if rec is None:
            raise KeyError_(f"no key with id {key_id}")
        return rec

    def rotate(self, key_id: str, *, grace_s: float = 0.0) -> tuple[KeyRecord, str]:
        """A new secret for the same key id; the old key keeps working for `grace_s` seconds."""
        rec = self.get(key_id)
        if rec.revoked_at is not None:
            raise KeyError_(f"key {key_id} is revoked; create a new one")
        now = time.time()
        text = new_key_text()
        if grace_s > 0:
            rec.previous_lookup, rec.previous_hash = rec.lookup, rec.secret_hash
            rec.previous_expires_at = now + grace_s
        else:
            rec.previous_lookup = rec.previous_hash = rec.previous_expires_at = None
        rec.lookup = text[len(PREFIX) : len(PREFIX) + LOOKUP_LEN]
        rec.secret_hash = self.hasher.hash(text)
        rec.rotated_at = now
        self.store.update_key(rec)
        return rec, text

    def revoke(self, key_id: str) -> KeyRecord:
        rec = self.get(key_id)
        if rec.revoked_at is None:
            rec.revoked_at = time.time()
            self.store.update_key(rec)
        return rec

    def authenticate(self, text: str, now: float | None = None) -> Principal | str:
        """The principal of a key, or why it is refused (`malformed`, `unknown`, `revoked`, `expired`)."""
        now = time.time() if now is None else now
        lookup = parse_key(text)
        if lookup is None:
            return "malformed"
        rec = self.store.find_key(lookup)
        if rec is None:
            return "unknown"
        given = self.hasher.hash(text)
        if rec.lookup == lookup:
            ok = hmac.compare_digest(given, rec.secret_hash)
        else:  # the previous key of a rotation, valid during its grace period only
            ok = rec.previous_hash is not None and hmac.compare_digest(given, rec.previous_hash)
            if ok and (rec.previous_expires_at is None or rec.previous_expires_at <= now):
                return "expired"
        if not ok:
            return "unknown"
        if rec.revoked_at is not None:
            return "revoked"
        if rec.expires_at is not None and rec.expires_at <= now:
            return "expired"
        return Principal(rec.id, rec.name, tuple(rec.models), tuple(rec.scopes), rec)
