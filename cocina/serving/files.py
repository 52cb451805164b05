"""Files: uploads for file inputs (`POST /v1/files`) and file outputs made into URLs.

An uploaded file's `urls.get` is `{base}/v1/files/{id}`; when a prediction input holds such a URL of this server,
the runtime hands the backend the local path instead of making the worker download it from ourselves.

`FileStore.publish_outputs` is the one place that decides what a predictor's file output (`{"__cocina_file__":
path}` from the worker) becomes:

- with an upload URL (`cocina serve --upload-url`, Cog's option), the file is PUT to `{upload_url}/{basename}`
  with its MIME type (25 s at most, as Cog's coglet), and the output is the answer's `Location` header (else the
  URL the PUT ended at) without its query string; an upload that fails fails the prediction (`OutputUploadError`);
- without one, a data URL when small, else the URL of a copy this server keeps.

The shape of the output is kept: a list of files stays a list (one element or many), a single file is a string.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import mimetypes
import re
import secrets
import shutil
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from cocina.serving.errors import InvalidInput
from cocina.store import utc_now

_FILE_ID = re.compile(r"^[a-z0-9]{20,40}$")
_OWN_URL = re.compile(r"^https?://[^/]+/v1/files/([a-z0-9]{20,40})(?:/download)?$")
FILE_MARKER = "__cocina_file__"
UPLOAD_TIMEOUT_S = 25.0  # Cog's coglet gives an output upload 25 s
_UPLOAD_CHUNK = 2**20


class OutputUploadError(Exception):
    """A file output could not be uploaded to the upload URL; the message says which file, where and why."""


def new_id() -> str:
    """A random lowercase id, like Replicate's (26 base-32 characters)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower().rstrip("=")[:26]


class FileStore:
    """Files under `root`: `<id>` (content) and `<id>.json` (metadata)."""

    def __init__(
        self, root: Path, base_url: str, *, upload_url: str | None = None, upload_timeout_s: float = UPLOAD_TIMEOUT_S
    ) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        # Outputs are PUT under this prefix (with a trailing slash, as Cog joins it) when it is set.
        self.upload_url = None if upload_url is None else upload_url.rstrip("/") + "/"
        self.upload_timeout_s = upload_timeout_s
        self._client: httpx.AsyncClient | None = None
        root.mkdir(parents=True, exist_ok=True)

    def _urls(self, file_id: str, base_url: str | None) -> dict[str, str]:
        base = (base_url or self.base_url).rstrip("/")
        return {"get": f"{base}/v1/files/{file_id}", "download": f"{base}/v1/files/{file_id}/download"}

    def save(
        self, content: bytes, *, name: str, content_type: str, metadata: dict[str, Any], base_url: str | None
    ) -> dict[str, Any]:
        """Store an upload; returns the Replicate File object."""
        file_id = new_id()
        (self.root / file_id).write_bytes(content)
        meta = {
            "id": file_id,
            "name": name,
            "content_type": content_type,
            "size": len(content),
            "etag": hashlib.md5(content, usedforsecurity=False).hexdigest(),
            "checksums": {"sha256": hashlib.sha256(content).hexdigest()},
            "metadata": metadata,
            "created_at": utc_now(),
            "expires_at": None,
        }
        (self.root / f"{file_id}.json").write_text(json.dumps(meta))
        return {**meta, "urls": self._urls(file_id, base_url)}

    def get(self, file_id: str, base_url: str | None = None) -> dict[str, Any] | None:
        """The File object, or None."""
        if not _FILE_ID.match(file_id):
            return None
        meta_path = self.root / f"{file_id}.json"
        if not meta_path.is_file():
            return None
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        return {**meta, "urls": self._urls(file_id, base_url)}

    def content_path(self, file_id: str) -> Path | None:
        if not _FILE_ID.match(file_id):
            return None
        path = self.root / file_id
        return path if path.is_file() else None

    def delete(self, file_id: str) -> bool:
        path = self.content_path(file_id)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        (self.root / f"{file_id}.json").unlink(missing_ok=True)
        return True

    def localize_inputs(self, value: Any) -> Any:
        """Replace URLs of files uploaded here by their local paths (recursively)."""
        if isinstance(value, str):
            m = _OWN_URL.match(value)
            if m:
                path = self.content_path(m.group(1))
                if path is not None:
                    return str(path)
            return value
        if isinstance(value, list):
            return [self.localize_inputs(v) for v in value]
        if isinstance(value, dict):
            return {k: self.localize_inputs(v) for k, v in value.items()}
        return value

    async def publish_outputs(self, value: Any, inline_max_bytes: int) -> Any:
        """Turn file markers from the worker into URLs (see the module's docstring), keeping the value's shape.
        Raises `OutputUploadError` when an upload fails."""
        if isinstance(value, dict):
            if set(value) == {FILE_MARKER}:
                path = Path(str(value[FILE_MARKER]))
                if self.upload_url is not None:
                    return await self._upload(path)
                return await asyncio.to_thread(self._publish, path, inline_max_bytes)
            return {k: await self.publish_outputs(v, inline_max_bytes) for k, v in value.items()}
        if isinstance(value, list):
            return [await self.publish_outputs(v, inline_max_bytes) for v in value]
        return value

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _upload(self, path: Path) -> str:
        assert self.upload_url is not None
        url = self.upload_url + urllib.parse.quote(path.name)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise OutputUploadError(f"The output file {path.name} could not be read: {exc.strerror}.") from None
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=True, timeout=self.upload_timeout_s)
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        try:
            async with asyncio.timeout(self.upload_timeout_s):
                resp = await self._client.put(url, content=_read_chunks(path), headers=headers)
        except TimeoutError:
            raise OutputUploadError(
                f"Uploading the output file {path.name} to {url} took longer than {self.upload_timeout_s:g} s."
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise OutputUploadError(
                f"Uploading the output file {path.name} to {url} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not resp.is_success:
            raise OutputUploadError(
                f"Uploading the output file {path.name} to {url} failed: the server answered {resp.status_code}."
            )
        final = resp.headers.get("location") or str(resp.url)
        parts = urllib.parse.urlsplit(final)
        return urllib.parse.urlunsplit(parts._replace(query=""))

    def _publish(self, path: Path, inline_max_bytes: int) -> str:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            size = path.stat().st_size
        except OSError:
            return ""
        if size <= inline_max_bytes:
            return f"data:{content_type};base64,{base64.b64encode(path.read_bytes()).decode()}"
        file_id = new_id()
        shutil.copyfile(path, self.root / file_id)
        meta = {
            "id": file_id,
            "name": path.name,
            "content_type": content_type,
            "size": size,
            "etag": "",
            "checksums": {},
            "metadata": {},
            "created_at": utc_now(),
            "expires_at": None,
        }
        (self.root / f"{file_id}.json").write_text(json.dumps(meta))
        return self._urls(file_id, None)["download"]


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    """The file's bytes a chunk at a time (read off the event loop): a 50 MiB output is never held whole."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, _UPLOAD_CHUNK):
            yield chunk
def _uri_fields(schema: dict[str, Any]) -> dict[str, bool]:
    """Input fields that hold file URLs (`Path`, `File`), and whether each is a list of them."""
    props = schema.get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {})
    out = {}
    for name, prop in props.items():
        if prop.get("format") == "uri":
            out[name] = False
        elif prop.get("type") == "array" and prop.get("items", {}).get("format") == "uri":
            out[name] = True
    return out


async def check_input_urls(
    inputs: dict[str, Any], schema: dict[str, Any], config: Any, files: FileStore | None = None
) -> None:
    """Refuse file inputs that would make the model's process fetch what it must not (SSRF): a URL whose host
    is loopback, private or link-local, another scheme than http(s)/data, or a local path. Files uploaded to
    this server (`/v1/files/<id>` of a file that exists here) are allowed. `InvalidInput` names the field."""
    import asyncio

    from cocina.sdk.urls import UrlPolicy, UrlRefused, check_addresses, split_url

    policy = UrlPolicy(config.allow_private_urls, tuple(config.url_allow_hosts))
    loop = asyncio.get_running_loop()
    errors = []
    for name, is_list in _uri_fields(schema).items():
        values = inputs.get(name)
        for i, value in enumerate(values if is_list and isinstance(values, list) else [values]):
            if not isinstance(value, str) or value.startswith("data:"):
                continue
            own = _OWN_URL.match(value)
            if own and files is not None and files.content_path(own.group(1)) is not None:
                continue  # replaced by the local file before it runs: nothing is fetched
            try:
                if value.startswith("/"):
                    raise UrlRefused("local file paths are not accepted over the API; upload the file or pass a URL")
                _, host, port = split_url(value)
                if not (policy.allow_private or policy.host_allowed(host, port)):
                    try:
                        infos = await loop.getaddrinfo(host, port)
                    except OSError:
                        raise UrlRefused(f"{host} does not resolve") from None
                    check_addresses(host, port, [str(x[4][0]) for x in infos], policy)
            except UrlRefused as exc:
                loc = ["body", "input", name, i] if is_list else ["body", "input", name]
                errors.append({"loc": loc, "msg": f"{name}: {exc}", "type": "url_refused"})
    if errors:
        raise InvalidInput(errors)


def url_policy_env(config: Any) -> dict[str, str]:
    """The environment that hands a model's process the URL policy (checked again at download time)."""
    from cocina.sdk.urls import POLICY_ENV, UrlPolicy

    policy = UrlPolicy(config.allow_private_urls, tuple(config.url_allow_hosts), (str(config.files_dir),))
    return {POLICY_ENV: policy.to_json()}
