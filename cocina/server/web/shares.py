"""Shares: a read-only link `/p/{token}` to exactly one prediction, until it is revoked or expires.

A token is 32 random bytes (URL-safe base64, 43 characters); only its SHA-256 is stored, so the link works only
for whoever was given it. A share names the prediction by id when it is made and is never re-pointed: there is
no link to "the latest output" of anything (a deep link that leaked another user's result is a known failure
of such pages). Anything not a live share — unknown, malformed, revoked, expired — is the same 404.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from cocina.serving.files import new_id
from cocina.store import ShareRecord, Store, utc_now

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_OWN_FILE = re.compile(r"^(?:https?://[^/]+)?/v1/files/([a-z0-9]{20,40})(?:/download)?$")
MAX_EXPIRY_S = 366 * 86400


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_share(
    store: Store, prediction_id: str, *, expires_in_s: float | None, by: str | None
) -> tuple[str, ShareRecord]:
    """A new share of the prediction; returns the token (shown once) and its record."""
    expires_at = None
    if expires_in_s is not None:
        expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat()
    while True:
        token = new_token()
        share = ShareRecord(new_id()[:16], prediction_id, digest(token), expires_at=expires_at, created_by=by)
        if store.put_share(share):
            return token, share


def is_open(share: ShareRecord, now: str | None = None) -> bool:
    """Neither revoked nor expired."""
    if share.revoked_at is not None:
        return False
    return share.expires_at is None or share.expires_at > (now or utc_now())


def open_share(store: Store, token: str) -> ShareRecord | None:
    """The live share this token opens, or None (malformed, unknown, revoked or expired alike)."""
    if not _TOKEN.match(token):
        return None
    share = store.find_share(digest(token))
    return share if share is not None and is_open(share) else None


def share_object(share: ShareRecord, base_url: str, token: str | None = None) -> dict[str, Any]:
    """The share as the page's API answers it; the URL only right after it was made (the token is not kept)."""
    return {
        "id": share.id,
        "prediction": share.prediction_id,
        "created_at": share.created_at,
        "expires_at": share.expires_at,
        "revoked_at": share.revoked_at,
        "open": is_open(share),
        "url": f"{base_url.rstrip('/')}/p/{token}" if token else None,
    }


def own_file_id(value: str) -> str | None:
    """The id of a file of this server that a URL names (`/v1/files/{id}[/download]`), or None."""
    m = _OWN_FILE.match(value)
    return m.group(1) if m else None


def file_ids(value: Any) -> set[str]:
    """Every file of this server that an input or output names."""
    if isinstance(value, str):
        found = own_file_id(value)
        return {found} if found else set()
    if isinstance(value, dict):
        return set().union(*(file_ids(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(file_ids(v) for v in value)) if value else set()
    return set()


def through_share(value: Any, token: str) -> Any:
    """`value` with this server's file URLs pointed at the share's own file route (a share's reader has no key
    for `/v1/files`)."""
    if isinstance(value, str):
        found = own_file_id(value)
        return f"/p/{token}/files/{found}" if found else value
    if isinstance(value, dict):
        return {k: through_share(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [through_share(v, token) for v in value]
    return value
