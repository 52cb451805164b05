"""Share tokens: random, stored only as digests, bound to one prediction; anything but a live share opens
nothing; the files a shared prediction names are reachable through the share, and no others."""

from __future__ import annotations

from pathlib import Path

from cocina.server.web import shares
from cocina.store import SQLiteStore


def test_tokens_open_their_prediction_until_revoked_or_expired(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    token, share = shares.create_share(store, "pred1", expires_in_s=None, by=None)
    assert len(token) == 43 and token not in share.digest and share.digest == shares.digest(token)
    assert store.find_share(shares.digest(token)) is not None
    opened = shares.open_share(store, token)
    assert opened is not None and opened.prediction_id == "pred1"
    other, _ = shares.create_share(store, "pred1", expires_in_s=None, by="key-1")
    assert other != token  # a new link each time
    for bad in (
        "",
        "x",
        token[:-1],
        token + "A",
        "../" + token[3:],
        token.upper() if token.upper() != token else "Z" * 43,
    ):
        assert shares.open_share(store, bad) is None
    assert store.revoke_share(share.id, "2026-01-01T00:00:00+00:00")
    assert shares.open_share(store, token) is None
    expiring, record = shares.create_share(store, "pred2", expires_in_s=3600, by=None)
    assert shares.open_share(store, expiring) is not None and record.expires_at is not None
    record.expires_at = "2000-01-01T00:00:00+00:00"
    assert not shares.is_open(record)
    obj = shares.share_object(record, "http://h:1/", expiring)
    assert obj["url"] == f"http://h:1/p/{expiring}" and obj["open"] is False
    assert shares.share_object(record, "http://h:1")["url"] is None  # the token is not kept: no URL later
    store.close()


def test_file_urls_go_through_the_share() -> None:
    fid = "a" * 26
    value = {
        "x": f"http://127.0.0.1:5000/v1/files/{fid}/download",
        "y": [f"/v1/files/{fid}", "https://example.org/v1/files/not-ours", "text"],
        "z": 3,
    }
    assert shares.file_ids(value) == {fid}
    routed = shares.through_share(value, "T" * 43)
    assert routed["x"] == f"/p/{'T' * 43}/files/{fid}" and routed["y"][0] == f"/p/{'T' * 43}/files/{fid}"
    assert routed["y"][1:] == ["https://example.org/v1/files/not-ours", "text"] and routed["z"] == 3
    assert shares.file_ids(None) == set() and shares.file_ids([]) == set() and shares.file_ids({}) == set()
