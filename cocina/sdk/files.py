"""Turning an input URL (http(s), data:, or a local path) into a local file, keeping its file name."""

from __future__ import annotations

import base64
import mimetypes
import pathlib
import re
import tempfile
import urllib.parse

import httpx

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


def fetch_to_local(value: str, tmp_dir: pathlib.Path | None = None) -> pathlib.Path:
    """Return a local path for `value`: a download of an http(s) URL, a decoded data URL, or the path itself.

    Downloads and decoded data land in a fresh directory under `tmp_dir` (or the system temp dir), so two inputs
    with the same file name never overwrite each other.
    """
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
    with httpx.stream("GET", value, follow_redirects=True, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        response.raise_for_status()
        url_name = urllib.parse.unquote(
            pathlib.PurePosixPath(urllib.parse.urlparse(str(response.url)).path).name
        )
        name = _name_from_content_disposition(response.headers.get("content-disposition")) or url_name
        path = target_dir / _safe_name(name, "file")
        with path.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    return path
