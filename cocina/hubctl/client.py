"""The CLI's way to a hub: `LocalHub` (the hub of a data directory on this machine, in-process) or `RemoteHub`
(a cocina server, over its Replicate-style HTTP API). Both answer in the API's JSON shapes, so `--json` prints
the same thing either way, and both push the same way: hash the project's files (remembering hashes between
pushes), send only what the hub lacks, then create the version (which the hub checks before it exists).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cocina.hub.manifest import Manifest, ManifestCache, build_manifest

Say = Callable[[str], None]


class HubClientError(Exception):
    """What the hub refused, as one message (the API's `detail`); `status` is its HTTP status when remote."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class PushProgress:
    """Callbacks for the push's stages: hashing (bytes), uploading (bytes), and the hub's own lines."""

    hashing: Callable[[int], None] = lambda _n: None
    uploading: Callable[[int], None] = lambda _n: None
    start_upload: Callable[[int, int], None] = lambda _files, _bytes: None
    say: Say = lambda _line: None


@dataclass(frozen=True)
class Pushed:
    version: dict[str, Any]
    created: bool
    uploaded_bytes: int
    manifest: Manifest


class HubClient(Protocol):
    where: str  # the URL clients use to reach the models (for the printed snippets)

    def push(self, directory: Path, name: str, progress: PushProgress) -> Pushed: ...
    def request(self, method: str, path: str, body: Any = None) -> Any: ...
    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]: ...


def _manifest(directory: Path, progress: PushProgress, cache: Path | None) -> tuple[Manifest, dict[str, Path]]:
    return build_manifest(directory, cache=ManifestCache(cache), progress=progress.hashing)


class RemoteHub:
    """A cocina server's hub over HTTP (`base_url` without `/v1`), authenticated with `token` if given."""

    def __init__(self, base_url: str, token: str | None = None, *, cache: Path | None = None) -> None:
        import httpx

        self.where = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.where, headers=headers, timeout=httpx.Timeout(60.0, read=None))
        self._cache = cache

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise HubClientError(f"cannot reach {self.where}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise HubClientError(_detail(resp), resp.status_code)
        return resp.json() if resp.content else None

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST `body` and yield the answer's JSON lines (a long operation's progress, then its result)."""
        import httpx

        try:
            with self._http.stream("POST", path, json=body, headers={"Accept": "application/x-ndjson"}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise HubClientError(_detail(resp), resp.status_code)
                yield from _items(resp.iter_lines())
        except httpx.HTTPError as exc:
            raise HubClientError(f"{path} failed: {type(exc).__name__}: {exc}") from None

    def push(self, directory: Path, name: str, progress: PushProgress) -> Pushed:
        manifest, sources = _manifest(directory, progress, self._cache)
        missing = self.request("POST", "/v1/hub/blobs/missing", {"digests": [f.sha256 for f in manifest.files]})[
            "missing"
        ]
        total = sum(sources[d].stat().st_size for d in missing)
        progress.start_upload(len(missing), total)
        for digest in missing:
            self._upload(digest, sources[digest], progress)
        return self._create(name, manifest, total, progress)

    def _upload(self, digest: str, path: Path, progress: PushProgress) -> None:
        import httpx

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(4 * 2**20):
                    progress.uploading(len(chunk))
                    yield chunk

        try:
            resp = self._http.put(
                f"/v1/hub/blobs/sha256/{digest}",
                content=chunks(),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)},
            )
        except httpx.HTTPError as exc:
            raise HubClientError(f"uploading {path.name} failed: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise HubClientError(f"uploading {path.name}: {_detail(resp)}", resp.status_code)

    def _create(self, name: str, manifest: Manifest, uploaded: int, progress: PushProgress) -> Pushed:
        for item in self.stream(f"/v1/models/{name}/versions", {"manifest": manifest.to_json()}):
            if "progress" in item:
                progress.say(item["progress"])
            elif "version" in item:
                return Pushed(item["version"], bool(item.get("created")), uploaded, manifest)
        raise HubClientError("the server ended the push without an answer")


class LocalHub:
    """The hub of a data directory on this machine (what `cocina serve --data-dir` serves), in-process: its API
    answered by the same application a server runs (with no model loaded), so every path and shape is the same."""

    def __init__(self, data_dir: Path, *, find_links: tuple[str, ...] = (), no_index: bool = False) -> None:
        from starlette.testclient import TestClient

        from cocina.hub.envs import EnvironmentBuilder
        from cocina.hub.hub import Hub
        from cocina.server.app import create_app
        from cocina.server.config import ServerConfig
        from cocina.serving import Serving, ServingConfig
        from cocina.store import SQLiteStore

        self.data_dir = data_dir
        self.where = "http://127.0.0.1:5000"  # what `cocina serve --data-dir` answers at by default
        self.store = SQLiteStore(data_dir / "predictions.db")
        root = data_dir / "hub"
        builder = EnvironmentBuilder(root / "envs", find_links=find_links, no_index=no_index)
        self.hub = Hub(self.store, root, builder=builder)
        serving = Serving(ServingConfig(data_dir=data_dir), [], store=self.store, catalog=self.hub)
        self._client = TestClient(create_app(serving, ServerConfig(), hub=self.hub), base_url="http://local")
        self._client.__enter__()  # runs the app's startup (and, at close, its shutdown)

    def close(self) -> None:
        self._client.__exit__(None, None, None)
        self.store.close()

    def push(self, directory: Path, name: str, progress: PushProgress) -> Pushed:
        manifest, sources = _manifest(directory, progress, self.data_dir / "hub" / "push-hashes.json")
        missing = self.hub.blobs.missing(f.sha256 for f in manifest.files)
        total = sum(sources[d].stat().st_size for d in missing)
        progress.start_upload(len(missing), total)
        for digest in missing:  # a local copy, not an upload
            self.hub.blobs.put_file(digest, sources[digest])
            progress.uploading(sources[digest].stat().st_size)
        result = self._client.portal.call(self.hub.create_version, name, manifest, progress.say)  # type: ignore[union-attr]
        from cocina.hub.objects import version_object

        return Pushed(version_object(result.version), result.created, total, manifest)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._client.request(method, path, json=body)
        if resp.status_code >= 400:
            raise HubClientError(_detail(resp), resp.status_code)
        return resp.json() if resp.content else None

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        with self._client.stream("POST", path, json=body, headers={"Accept": "application/x-ndjson"}) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise HubClientError(_detail(resp), resp.status_code)
            yield from _items(resp.iter_lines())


def _items(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """A progress stream's items; its `{"error": problem}` line raises."""
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        if "error" in item:
            error = item["error"]
            raise HubClientError(str(error.get("detail") or error.get("title")), error.get("status"))
        yield item


def _detail(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:300]}"
    if isinstance(body, dict):
        if "detail" in body:
            detail = body["detail"]
            return detail if isinstance(detail, str) else json.dumps(detail)
        if "error" in body and isinstance(body["error"], dict):
            return str(body["error"].get("message"))
    return f"HTTP {resp.status_code}: {json.dumps(body)[:300]}"
