"""`Hub`: models, their immutable versions, and deployments with numbered releases, kept in the store and under
the data directory (`hub/blobs`, `hub/versions/<id>`, `hub/envs/<hash>`).

A version is pushed as a manifest of files whose contents are uploaded as blobs first (only those the hub does
not have). Creating it places the files, builds (or reuses) its environment, and checks it the way Cog's build
would fail — the config parses, predict.py imports, the schema derives — all without running `setup()`. Only
then is the version recorded: a push that fails or is cut off leaves no version behind, and the version id is
the manifest's hash, so pushing the same content again is the same version and uploads nothing.

The hub is also serving's catalog (`cocina.serving.registry.Catalog`): it turns a pushed version into a
`ModelSpec` and a deployment into a route.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocina.config import ConfigError, load_project
from cocina.hub.blobs import BlobError, BlobStore
from cocina.hub.deployments import Split, check_configuration, choose, splits_of
from cocina.hub.envs import EnvironmentBuilder, EnvironmentBuildError, environment_spec
from cocina.hub.manifest import Manifest
from cocina.serving import ModelSpec, Serving
from cocina.serving.errors import Conflict, InvalidRequest, ModelNotFound, Unprocessable
from cocina.serving.registry import Route
from cocina.serving.spec import SpecError, check_name, project_spec
from cocina.store import DeploymentRecord, ModelRecord, ReleaseRecord, Store, VersionRecord

log = logging.getLogger("cocina.hub")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PushResult:
    """A pushed version, and whether this push created it (False: the same content was there already)."""

    version: VersionRecord
    created: bool


class Hub:
    """The hub of one data directory. `serving`, when set, hears of new, deleted and re-routed versions."""

    def __init__(
        self,
        store: Store,
        root: Path,
        *,
        builder: EnvironmentBuilder | None = None,
        engine_options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.root = root
        self.blobs = BlobStore(root / "blobs")
        self.versions_dir = root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.builder = builder or EnvironmentBuilder(root / "envs")
        self.engine_options = dict(engine_options or {})
        self.environ = dict(environ or {})
        self.serving: Serving | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    # ---- models

    def create_model(self, name: str, *, description: str | None = None, visibility: str = "private") -> ModelRecord:
        _check_model_name(name)
        if visibility not in ("public", "private"):
            raise InvalidRequest("visibility must be public or private", param="visibility")
        record = ModelRecord(name, description, visibility)
        if not self.store.put_model(record):
            raise Conflict(f"Model {name} already exists.")
        return record

    def get_model(self, name: str) -> ModelRecord:
        record = self.store.get_model(name)
        if record is None:
            raise ModelNotFound(f"Model {name} not found.", param="model")
        return record

    def list_models(self) -> list[ModelRecord]:
        return self.store.list_models()

    def delete_model(self, name: str) -> None:
        """Only a model without versions can go (as on Replicate)."""
        self.get_model(name)
        if self.store.list_versions(name, pushed_only=True):
            raise Conflict(f"Model {name} still has versions; delete them first.")
        self.store.delete_model(name)

    # ---- pushing

    def missing_blobs(self, digests: list[str]) -> list[str]:
        try:
            return self.blobs.missing(digests)
        except BlobError as exc:
            raise InvalidRequest(str(exc), param="digests") from None

    async def put_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> int:
        try:
            return await self.blobs.put_stream(digest, chunks)
        except BlobError as exc:
            raise Unprocessable(str(exc)) from None

    def store_files(self, manifest: Manifest, sources: Mapping[str, Path]) -> int:
        """A push to the hub of this machine: the files it lacks copied in from the project (then
        `create_version`); how many bytes were copied."""
        copied = 0
        for digest in self.blobs.missing(f.sha256 for f in manifest.files):
            self.blobs.put_file(digest, sources[digest])
            copied += sources[digest].stat().st_size
        return copied

    async def create_version(self, name: str, manifest: Manifest, progress: Progress | None = None) -> PushResult:
        """Make a version of `name` from uploaded blobs (the model is created if new). Raises `Conflict` when
        blobs are missing, `Unprocessable` when the project fails its checks (nothing is recorded then)."""
        say = progress or (lambda _line: None)
        _check_model_name(name)
        vid = manifest.version_id
        lock = self._locks.setdefault(vid, asyncio.Lock())
        async with lock:
            existing = self.store.get_version(name, vid)
            if existing is not None and existing.manifest is not None:
                say(f"version {vid} of {name} exists already: nothing to do")
                return PushResult(existing, False)
            missing = self.blobs.missing(f.sha256 for f in manifest.files)
            if missing:
                raise Conflict(f"{len(missing)} file(s) of this version were not uploaded: {', '.join(missing[:5])}")
            directory, placed = await asyncio.to_thread(self._place, manifest)
            try:
                schema, environment = await self._check(directory, say)
            except Exception:
                if placed:  # nothing of a failed push stays (files another model's version uses do)
                    shutil.rmtree(directory, ignore_errors=True)
                raise
            self.store.put_model(ModelRecord(name))
            record = VersionRecord(
                name, vid, openapi_schema=schema, manifest=manifest.to_json(), environment=environment
            )
            self.store.put_version(record)
            created = self.store.get_version(name, vid)
            assert created is not None
            say(f"version {vid} of {name} created")
            if self.serving is not None:
                self.serving.models.add(self.spec(created))
            return PushResult(created, True)

    def _place(self, manifest: Manifest) -> tuple[Path, bool]:
        """The version's files under `versions/<id>/` (put together aside, then renamed into place); whether
        this call placed them (False: the same content is there already, for another model)."""
        directory = self.versions_dir / manifest.version_id
        if directory.is_dir():
            return directory, False
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for entry in manifest.files:
            self.blobs.materialize(entry.sha256, partial / entry.path, executable=entry.executable)
        partial.mkdir(parents=True, exist_ok=True)  # an empty project still gets its directory
        partial.rename(directory)
        return directory, True

    async def _check(self, directory: Path, say: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
        """What Cog's build checks: the config, the environment, predict.py imports and gives a schema."""
        inside = f"{directory}/"  # messages name the project's files as the user knows them
        try:
            project = load_project(directory)
        except (ConfigError, FileNotFoundError) as exc:
            raise Unprocessable(f"the project is invalid: {str(exc).replace(inside, '')}") from None
        try:
            env_spec = environment_spec(project)
            environment = await asyncio.to_thread(self.builder.ensure, env_spec, say)
        except EnvironmentBuildError as exc:
            raise Unprocessable(str(exc)) from None
        say("checking the predictor (import and schema, without setup)")
        from cocina.worker.runner import Runner

        runner = Runner(project, python=environment.python, schema_only=True, restart_on_exit=False)
        try:
            result = await runner.start()
            if result.status.value != "succeeded":
                logs = result.logs[-2000:].replace(inside, "")
                raise Unprocessable(f"the predictor does not load: {result.error}\n{logs}".rstrip())
            schema = runner.openapi_schema
        finally:
            await runner.shutdown(grace_s=0)
        info = {
            "python": environment.python,
            "hash": env_spec.hash,
            "installed": list(environment.installed),
            "notes": list(environment.notes),
        }
        return schema, info

    # ---- versions

    def list_versions(self, name: str) -> list[VersionRecord]:
        self.get_model(name)
        return self.store.list_versions(name, pushed_only=True)

    def get_version(self, name: str, version: str) -> VersionRecord:
        record = self.store.get_version(name, version)
        if record is None or record.manifest is None:
            if self.store.get_model(name) is None:
                raise ModelNotFound(f"Model {name} not found.", param="model")
            raise ModelNotFound(f"Version {version} of {name} not found.", param="version")
        return record

    def resolve_version(self, name: str, prefix: str) -> str:
        """A version id from a unique prefix of it (as git takes short hashes)."""
        matches = [v.id for v in self.list_versions(name) if v.id.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ModelNotFound(f"Version {prefix} of {name} not found.", param="version")
        raise InvalidRequest(f"{prefix} names {len(matches)} versions of {name}; give more of it", param="version")

    async def delete_version(self, name: str, version: str) -> None:
        """Refused while a deployment's current release routes to it or predictions of it still run."""
        self.get_version(name, version)
        for dep in self.store.list_deployments(name):
            if dep.current_release and any(s.version == version for s in splits_of(dep.current_release.configuration)):
                raise Conflict(
                    f"Version {version} is in use by deployment {dep.name} (release {dep.current_release.number})."
                )
        running = self.store.count_unfinished(name, version)
        if running:
            raise Conflict(f"Version {version} still has {running} prediction(s) queued or running.")
        if self.serving is not None:
            await self.serving.remove_version(name, version)
        self.store.delete_version(name, version)
        if not any(v.id == version and v.manifest is not None for v in self.store.list_versions(None)):
            shutil.rmtree(self.versions_dir / version, ignore_errors=True)

    def spec(self, version: VersionRecord) -> ModelSpec:
        """How serving runs a pushed version: its files, its environment's interpreter, the server's engine
        options for a language model."""
        directory = self.versions_dir / version.id
        try:
            spec = project_spec(
                directory,
                name=version.model,
                engine_options=self.engine_options,
                environ=self.environ,
                version=version.id,
            )
        except (ConfigError, SpecError) as exc:
            raise Unprocessable(f"version {version.id} of {version.model} cannot be served: {exc}") from None
        python = (version.environment or {}).get("python")
        return spec.replace(python=python, source=f"pushed version {version.id[:12]}", pushed=True)

    # ---- the catalog serving asks

    def find(self, name: str, version: str | None) -> ModelSpec | None:
        if version is None:
            versions = self.store.list_versions(name, pushed_only=True)
            return self.spec(versions[0]) if versions else None
        record = self.store.get_version(name, version)
        return self.spec(record) if record is not None and record.manifest is not None else None

    def find_version(self, version: str) -> ModelSpec | None:
        for record in self.store.list_versions(None, pushed_only=True):
            if record.id == version:
                return self.spec(record)
        return None

    def route(self, deployment: str, sticky_key: str | None) -> Route | None:
        record = self.store.get_deployment(deployment)
        if record is None or record.current_release is None:
            return None
        release = record.current_release
        if int(release.configuration.get("max_instances", 1)) == 0:
            from cocina.serving.errors import ModelUnavailable

            raise ModelUnavailable(f"Deployment {deployment} is disabled (max_instances 0).")
        split = choose(deployment, splits_of(release.configuration), sticky_key)
        return Route(record.model, split.version, release.number)

    def warm(self) -> set[tuple[str, str]]:
        wanted: set[tuple[str, str]] = set()
        for dep in self.store.list_deployments():
            release = dep.current_release
            if release is not None and int(release.configuration.get("min_instances", 0)) > 0:
                wanted.update((dep.model, s.version) for s in splits_of(release.configuration))
        return wanted

    # ---- deployments

    def _known(self, model: str) -> set[str]:
        return {v.id for v in self.store.list_versions(model, pushed_only=True)}

    def create_deployment(
        self,
        name: str,
        model: str,
        splits: list[Split],
        *,
        min_instances: int = 0,
        max_instances: int = 1,
        by: str | None = None,
    ) -> DeploymentRecord:
        _check_model_name(name, "deployment name")
        self.get_model(model)
        configuration = check_configuration(model, splits, min_instances, max_instances, self._known(model))
        if not self.store.create_deployment(DeploymentRecord(name, model), configuration, by):
            raise Conflict(f"Deployment {name} already exists.")
        self._routed()
        return self.get_deployment(name)

    def get_deployment(self, name: str) -> DeploymentRecord:
        record = self.store.get_deployment(name)
        if record is None:
            raise ModelNotFound(f"Deployment {name} not found.", param="deployment")
        return record

    def list_deployments(self) -> list[DeploymentRecord]:
        return self.store.list_deployments()

    def update_deployment(
        self,
        name: str,
        *,
        splits: list[Split] | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
        by: str | None = None,
    ) -> DeploymentRecord:
        """Every change is a new release, built on the current one."""
        record = self.get_deployment(name)
        current = record.current_release
        assert current is not None
        config = current.configuration
        configuration = check_configuration(
            record.model,
            splits if splits is not None else splits_of(config),
            config["min_instances"] if min_instances is None else min_instances,
            config["max_instances"] if max_instances is None else max_instances,
            self._known(record.model),
        )
        self.store.add_release(name, configuration, by)
        self._routed()
        return self.get_deployment(name)

    def rollback(self, name: str, to_release: int | None = None, *, by: str | None = None) -> DeploymentRecord:
        """A new release that routes as release `to_release` did (default: the one before the current)."""
        releases = self.store.list_releases(name)
        if not releases:
            raise ModelNotFound(f"Deployment {name} not found.", param="deployment")
        if to_release is None:
            if len(releases) < 2:
                raise InvalidRequest(f"Deployment {name} has no earlier release to roll back to.", param="release")
            target: ReleaseRecord = releases[1]
        else:
            found = [r for r in releases if r.number == to_release]
            if not found:
                raise ModelNotFound(f"Release {to_release} of {name} not found.", param="release")
            target = found[0]
        record = self.get_deployment(name)
        config = target.configuration
        configuration = check_configuration(
            record.model, splits_of(config), config["min_instances"], config["max_instances"], self._known(record.model)
        )
        self.store.add_release(name, configuration, by)
        self._routed()
        return self.get_deployment(name)

    def releases(self, name: str) -> list[ReleaseRecord]:
        self.get_deployment(name)
        return self.store.list_releases(name)

    def stats(self, name: str, limit: int = 10_000) -> dict[str, Any]:
        """The deployment's live traffic per version (its last `limit` predictions)."""
        from cocina.hub.quality import live_stats

        record = self.get_deployment(name)
        rows = self.store.of_deployment(name, limit)
        current = record.current_release
        return {
            "deployment": name,
            "model": record.model,
            "release": current.number if current else None,
            "predictions": len(rows),
            "versions": live_stats(rows),
        }

    def delete_deployment(self, name: str) -> None:
        self.get_deployment(name)
        self.store.delete_deployment(name)
        self._routed()

    def _routed(self) -> None:
        if self.serving is not None:
            self.serving.refresh_warm()


def _check_model_name(name: str, what: str = "model name") -> None:
    try:
        check_name(name, what)
    except SpecError as exc:
        raise InvalidRequest(str(exc), param="name") from None
