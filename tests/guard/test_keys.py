"""API keys: format and checksum, keyed hashes only at rest, scopes and model patterns, rotation with a grace
period, revocation, expiry, and a comparison whose time does not depend on how much of a guess is right."""

from __future__ import annotations

import statistics
import time

import pytest

from cocina.guard.keys import KEY_LEN, KeyError_, KeyHasher, Keys, Principal, looks_like_key, parse_duration, parse_key
from cocina.store import SQLiteStore


@pytest.fixture
def keys(store: SQLiteStore) -> Keys:
    return Keys(store, KeyHasher(b"k" * 32))


def test_a_key_is_printed_once_and_stored_only_as_a_keyed_hash(keys: Keys, store: SQLiteStore) -> None:
    rec, text = keys.create("ci", models=["acme/*"], scopes=["predict"], rpm=60)
    assert text.startswith("ck_") and len(text) == KEY_LEN and looks_like_key(text)
    stored = store.get_key(rec.id)
    assert stored is not None
    row = [v for v in vars(stored).values() if isinstance(v, str | bytes)]
    assert not any(text in str(v) or text.encode() in (v if isinstance(v, bytes) else b"") for v in row)
    assert stored.secret_hash == KeyHasher(b"k" * 32).hash(text) != KeyHasher(b"x" * 32).hash(text)
    principal = keys.authenticate(text)
    assert isinstance(principal, Principal) and principal.id == rec.id
    assert principal.allows_model("acme/echo") and not principal.allows_model("other/echo")
    assert principal.has_scope("predict") and not principal.has_scope("admin")


def test_refusals_say_why(keys: Keys) -> None:
    rec, text = keys.create("x", expires_in_s=3600)
    assert keys.authenticate("nope") == "malformed"
    body = text[3:-6]
    forged = text[:-7] + ("A" if text[-7] != "A" else "B") + text[-6:]
    assert keys.authenticate(forged) == "malformed"  # the checksum catches a changed character
    from cocina.guard.keys import _checksum

    guess = "ck_" + body[:8] + "0" * 32
    guess += _checksum(guess[3:])
    assert keys.authenticate(guess) == "unknown"  # right lookup, wrong secret
    assert keys.authenticate(text, now=rec.expires_at + 1) == "expired"  # type: ignore[operator]
    keys.revoke(rec.id)
    assert keys.authenticate(text) == "revoked"


def test_rotation_keeps_the_id_and_a_grace_period(keys: Keys) -> None:
    rec, old = keys.create("svc")
    _, new = keys.rotate(rec.id, grace_s=60)
    assert new != old
    p_new, p_old = keys.authenticate(new), keys.authenticate(old)
    assert isinstance(p_new, Principal) and isinstance(p_old, Principal) and p_new.id == p_old.id == rec.id
    assert keys.authenticate(old, now=time.time() + 61) == "expired"
    _, newer = keys.rotate(rec.id)  # no grace: the previous key stops at once
    assert keys.authenticate(new) == "unknown" and isinstance(keys.authenticate(newer), Principal)


def test_bad_options_are_refused(keys: Keys) -> None:
    with pytest.raises(KeyError_, match="scope"):
        keys.create("x", scopes=["root"])
    with pytest.raises(KeyError_, match="rpm"):
        keys.create("x", rpm=0)
    with pytest.raises(KeyError_, match="no key"):
        keys.revoke("key_missing")
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400
    with pytest.raises(KeyError_):
        parse_duration("soon")
    assert parse_key("ck_" + "a" * 46) is None


def test_checking_a_key_takes_the_same_time_however_much_of_it_is_right(keys: Keys) -> None:
    """The stored hash is compared with hmac.compare_digest on HMACs: a guess that shares 45 of 46 characters
    with the key takes as long to refuse as one that shares only the lookup."""
    from cocina.guard.keys import _checksum

    _, text = keys.create("timing")
    lookup = text[3:11]

    def with_secret(secret: str) -> str:
        body = lookup + secret
        return "ck_" + body + _checksum(body)

    near = with_secret(text[11:-7] + ("A" if text[-7] != "A" else "B"))  # differs in the last secret character
    far = with_secret("0" * 32)

    def batch(candidate: str) -> float:
        t0 = time.perf_counter()
        for _ in range(200):
            assert keys.authenticate(candidate) == "unknown"
        return time.perf_counter() - t0

    batch(near), batch(far)  # warm the caches first
    # Interleaved rounds, so that load from other processes hits both alike; the median ratio is robust to it.
    ratios = [batch(near) / batch(far) for _ in range(15)]
    assert 0.8 < statistics.median(ratios) < 1.25, ratios
