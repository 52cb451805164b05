"""Turning an input URL (http(s), data:, or a local path) into a local file, keeping its file name."""

from __future__ import annotations

import base64
import contextlib
import mimetypes
import os
import pathlib
import re
import tempfile
import urllib.parse
from collections.abc import Iterator

import httpx

from cocina.sdk.urls import POLICY_ENV, GuardedBackend, UrlPolicy, UrlRefused, check_url

__all__ = ["fetch_to_local", "is_url"]

# Long names break some file systems (255 bytes); keep room for a suffix.
_MAX_NAME_BYTES = 200
_DOWNLOAD_TIMEOUT_S = 300.0


def is_url(value: str) -> bool:
    """True for http(s) and data URLs, the forms Cog accepts for a `Path` input."""
    return value.startswith(("http://", "https://", "data:"))


def _safe_name(name: str, fallback: str) -> str:
    name = name.replace("/", "_").replace("\\", "_").strip() or fallback
    if name in (".", ".."):
        name = fallback
    encoded = name.encode()
    if len(encoded) > _MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        keep = _MAX_NAME_BYTES - len(ext.encode()) - 1 if dot else _MAX_NAME_BYTES
        head = (stem if dot else name).encode()[: max(keep, 1)].decode(errors="ignore")
        name = f"{head}.{ext}" if dot else head
    return name


def _name_from_content_disposition(header: str | None) -> str | None:
    if not header:
        return None
    match = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", header, flags=re.IGNORECASE)
    return urllib.parse.unquote(match.group(1)) if match else None


_MAX_REDIRECTS = 5


def _policy() -> UrlPolicy | None:
    # Set by serving for a served model's process (the process boundary); `cocina predict` sets none.
    text = os.environ.get(POLICY_ENV)
    return UrlPolicy.from_json(text) if text else None


def fetch_to_local(value: str, tmp_dir: pathlib.Path | None = None) -> pathlib.Path:
    """Return a local path for `value`: a download of an http(s) URL, a decoded data URL, or the path itself.

    Downloads and decoded data land in a fresh directory under `tmp_dir` (or the system temp dir), so two inputs
    with the same file name never overwrite each other. In a served model's process a URL policy is in force
    (`cocina.sdk.urls`): each redirect and the address connected to are checked before anything is sent.
    """
    policy = _policy()
    if policy is not None and not value.startswith(("http://", "https://", "data:")) and not policy.path_allowed(value):
        raise UrlRefused("only http(s) and data URLs are accepted")
    if not is_url(value):
        return pathlib.Path(value)
    base = tmp_dir if tmp_dir is not None else pathlib.Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    target_dir = pathlib.Path(tempfile.mkdtemp(prefix="input-", dir=base))
    if value.startswith("data:"):
        header, _, payload = value[5:].partition(",")
        mime = header.split(";")[0] or "application/octet-stream"
        data = (
            base64.b64decode(payload)
            if header.endswith(";base64")
            else urllib.parse.unquote_to_bytes(payload)
        )
        ext = mimetypes.guess_extension(mime) or ""
        path = target_dir / f"file{ext}"
        path.write_bytes(data)
        return path
    if policy is None:
        client = httpx.Client(follow_redirects=True, timeout=_DOWNLOAD_TIMEOUT_S)
    else:
        transport = httpx.HTTPTransport()
        # httpx takes no network backend; its transport's pool does (the documented httpcore one).
        import httpcore

        transport._pool = httpcore.ConnectionPool(network_backend=GuardedBackend(policy))
        client = httpx.Client(transport=transport, follow_redirects=False, timeout=_DOWNLOAD_TIMEOUT_S)
    with client, _download(client, value, policy) as response:
        url_name = urllib.parse.unquote(
            pathlib.PurePosixPath(urllib.parse.urlparse(str(response.url)).path).name
        )
        name = _name_from_content_disposition(response.headers.get("content-disposition")) or url_name
        path = target_dir / _safe_name(name, "file")
        with path.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    return path


@contextlib.contextmanager
def _download(client: httpx.Client, url: str, policy: UrlPolicy | None) -> Iterator[httpx.Response]:
    """The final response for `url`, redirects followed one by one (each checked against the policy)."""
    for _ in range(_MAX_REDIRECTS + 1):
        if policy is not None:
            check_url(url, policy)
        with client.stream("GET", url) as response:
            if policy is not None and response.is_redirect:
                url = str(response.url.join(response.headers.get("location", "")))
                continue
            response.raise_for_status()
            yield response
            return
    raise UrlRefused(f"more than {_MAX_REDIRECTS} redirects")
