"""`Serving`: every model of a server, their runtimes, the store, leases, files and webhooks, in one object.

The HTTP layer holds one `Serving` and calls it: `admit` to start a prediction, `get` / `wait` / `events` /
`cancel` to follow one by id, `page` to list, `health` for probes, `drain` to stop. It knows no HTTP.

Lifecycle (`ServerState`): STARTING (store opened, leases reclaimed, warm models loading) -> READY ->
DRAINING -> STOPPED.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cocina.rag import RagConfig
from cocina.rag.prompt import REWRITE_PROMPT, first_line
from cocina.rag.service import RagService
from cocina.serving.admission import AdmissionRequest, Admitted, admit
from cocina.serving.config import ServingConfig
from cocina.serving.errors import InvalidRequest, ServingError, ShuttingDown
from cocina.serving.events import Completed, LogChunk, OutputChunk, PredictionEvent, ReplayTruncated, Started
from cocina.serving.files import FILE_MARKER, FileStore, new_id, url_policy_env
from cocina.serving.gate import Gate
from cocina.serving.jobs import GenerationOptions
from cocina.serving.model import DEFAULT_STREAM_HISTORY_CAPACITY, ModelState, ServedModel
from cocina.serving.recovery import LeaseKeeper, new_owner_id
from cocina.serving.registry import Catalog, ModelSet
from cocina.serving.replay import replay
from cocina.serving.retrieval import Retrieval, retrieve
from cocina.serving.runtime import (
    CancelReason,
    ModelRuntime,
    PredictionBook,
    Renderer,
    RuntimeContext,
    TrainingFailed,
)
from cocina.serving.spec import ModelSpec
from cocina.serving.webhooks import WebhookSender
from cocina.serving.writes import StoreWriter
from cocina.store import (
    PredictionRecord,
    PredictionStatus,
    SQLiteStore,
    Store,
    StoreError,
    VersionRecord,
    open_store,
)

log = logging.getLogger("cocina.serving")


class ServerState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


class Serving:
    """Serves `specs` (the first, or `default`, is Cog's root model). `await start()`; `await drain()` at
    the end. `store` defaults to the config's (`store_url`, else SQLite in the data directory); `gate` (the guard)
    is called by admission and at each prediction's end."""

    remote_poll_s = 0.25  # a prediction another server runs is re-read at least this often while followed

    def __init__(
        self,
        config: ServingConfig,
        specs: list[ModelSpec],
        *,
        store: Store | None = None,
        default: str | None = None,
        gate: Gate | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.config = config
        self.gate = gate  # the guard (keys, limits, scanners, audit), when configured
        self.specs = list(specs)
        self._default = default
        self.catalog = catalog
        self._given_store = store
        self._policy_env: dict[str, str] = {}  # the URL policy every model's process gets (set at start)
        self.state = ServerState.STARTING
        self.owner = new_owner_id()
        self.book = PredictionBook()
        self.renderers: dict[str, Renderer] = {}  # webhook bodies by surface (the API layer registers them)
        self._tasks: list[asyncio.Task[None]] = []
        self.store: Store
        self.files: FileStore
        self.webhooks: WebhookSender
        self.models: ModelSet
        self.leases: LeaseKeeper
        self._ctx: RuntimeContext
        # Indexes and embedding models (retrieval-augmented generation, /v1/embeddings): nothing loads until used.
        self.rag = RagService(config.data_dir / "indexes", config.embedding_models)

    # ---- lifecycle

    async def start(self) -> None:
        """Open the store, reclaim orphaned predictions of our models, start the warm models loading."""
        config = self.config
        if self._given_store is not None:
            self.store = self._given_store
        elif config.store_url is not None:
            self.store = open_store(config.store_url)
        else:
            self.store = SQLiteStore(config.db_path)
        self.files = FileStore(config.files_dir, config.public_url, upload_url=config.upload_url)
        self.webhooks = WebhookSender(min_interval_s=config.webhook_min_interval_s, retries=config.webhook_retries)
        if self.gate is not None:
            await self.gate.start(self.store)
        threads = config.store_threads
        if threads is None:
            threads = 2 if getattr(self.store, "concurrent_calls", False) else 0
        ctx = RuntimeContext(
            config,
            self.store,
            self.files,
            self.webhooks,
            self.book,
            self.owner,
            StoreWriter(self.store, threads),
            self.renderers,
            publish_training=self._publish_training if self.catalog is not None else None,
            gate=self.gate,
        )
        self._ctx = ctx
        self._policy_env = url_policy_env(config)
        self.specs = [self._with_policy(s) for s in self.specs]
        runtimes = [self._runtime(spec) for spec in self.specs]
        self.models = ModelSet(runtimes, config, self._default, catalog=self.catalog, make=self._make_runtime)
        if self.models.default_name is not None:
            # Predictions stored before models were recorded belong to the one model the server had then.
            self.store.adopt_unowned(self.models.default_name)
        self.leases = LeaseKeeper(
            self.store, self.owner, config.lease_s, lambda: list(self.models.by_name), self._resume
        )
        for runtime in runtimes:
            runtime.start()
            if runtime.model.warm:
                self._tasks.append(asyncio.get_running_loop().create_task(self._warm(runtime.model)))
        self.refresh_warm()
        self.leases.reclaim()
        self.leases.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._rewrite_loop(ctx)))
        if config.retention_s is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._retention_loop(config.retention_s)))
        self.state = ServerState.READY

    def _with_policy(self, spec: ModelSpec) -> ModelSpec:
        """`spec` with the URL policy in its environment (its process checks downloads against it)."""
        return spec.replace(env={**spec.env, **self._policy_env})

    def _runtime(self, spec: ModelSpec) -> ModelRuntime:
        """A runtime for `spec` (not started), what the store remembers of its version applied (a version's
        record holds its predictor's schema: a `train` runtime learns its own at its first load)."""
        spec = self._with_policy(spec)
        cached = self.store.get_version(spec.name, spec.version)
        if cached is None:
            cached = VersionRecord(spec.name, spec.version)
            self.store.put_version(cached)  # first served now: its creation time stays across restarts
        if spec.mode == "train":
            model = ServedModel(spec)
        else:
            model = ServedModel(
                spec,
                schema=cached.openapi_schema or None,
                language_model=cached.info.get("language_model"),
                streaming=cached.info.get("streaming"),
            )
        model.version_created_at = cached.created_at
        model.loader = self._load
        return ModelRuntime(model, self._ctx)

    def _make_runtime(self, spec: ModelSpec) -> ModelRuntime:
        """A version found later (pushed, or named by a deployment), or a version's `train` runtime: started."""
        runtime = self._runtime(spec)
        runtime.start()
        what = "trainings of" if spec.mode == "train" else "serving"
        log.info("%s %s version %s (%s)", what, spec.name, spec.version[:12], spec.source)
        return runtime

    def refresh_warm(self) -> None:
        """Keep loaded what deployments ask to keep loaded (`min_instances` > 0), as the catalog says now."""
        if self.catalog is None or not hasattr(self, "models"):
            return
        wanted = self.catalog.warm()
        for name, version in wanted:
            try:
                runtime = self.models.version(name, version)
            except Exception:
                log.exception("cannot keep %s:%s warm", name, version)
                continue
            if not runtime.model.warm:
                runtime.model.warm = True
                runtime.wake()
        for runtime in self.models:
            key = (runtime.model.name, runtime.model.version)
            if runtime.model.warm and key not in wanted and not runtime.model.spec.warm:
                runtime.model.warm = False  # warm only for a deployment that no longer asks for it

    async def remove_version(self, name: str, version: str) -> None:
        """Stop serving a version (deleted from the hub): its process stops, its runtime goes."""
        runtime = self.models.remove(name, version)
        if runtime is not None:
            await runtime.drain(1.0)
        trainer = self.models.trainers.pop((name, version), None)
        if trainer is not None:
            await trainer.drain(1.0)

    async def _warm(self, model: ServedModel) -> None:
        with contextlib.suppress(Exception):
            await model.request_load()

    async def _load(self, model: ServedModel) -> None:
        """Load a model (making room first) and remember its schema for the next cold start."""
        await self.models.load(model)
        if model.state is ModelState.READY and model.schema and not model.trains:
            info: dict[str, Any] = {}
            if model.language_model_info is not None:
                info["language_model"] = model.language_model_info
            if model.streaming is not None:
                info["streaming"] = model.streaming
            try:
                self.store.put_version(
                    VersionRecord(
                        model.name, model.version, model.version_created_at, openapi_schema=model.schema, info=info
                    )
                )
            except Exception:
                log.exception("could not record version %s of %s", model.version, model.name)

    def rewrite_unwritten(self, ctx: RuntimeContext) -> int:
        """Write again the records the store refused; how many it took (stops at the first refusal)."""
        written = 0
        for pid, rec in list(ctx.unwritten.items()):
            gate = self._ctx.gate
            try:
                # Fenced: a prediction taken over meanwhile is not ours. Through the guard, as every write is.
                self.store.update(gate.persist(rec) if gate is not None else rec, owner=self.owner)
            except StoreError:
                break
            if ctx.unwritten.get(pid) is rec:
                del ctx.unwritten[pid]
            written += 1
        if written:
            log.info("wrote %d predictions the store had refused", written)
        return written

    async def _rewrite_loop(self, ctx: RuntimeContext) -> None:
        while True:
            await asyncio.sleep(0.5)
            if ctx.unwritten:
                self.rewrite_unwritten(ctx)

    def _resume(self, rec: PredictionRecord) -> None:
        runtime = self.models.by_name.get(rec.model or "")
        if runtime is not None and rec.kind == "training":
            runtime = self.models.runtimes.get((runtime.model.name, rec.version or "")) or runtime
            try:
                runtime = self.models.trainer(runtime)
            except ServingError as exc:
                log.error("training %s cannot be resumed: %s", rec.id, exc.message)
                return
        if runtime is not None:
            runtime.resume(rec)

    async def _publish_training(self, rec: PredictionRecord, source: ModelSpec, output: Any) -> dict[str, Any]:
        """A succeeded training's new version of its destination model: the trained version's files, with the
        weights the training returned (a `Path`, or an object's `weights` field) as its `weights`."""
        assert self.catalog is not None
        weights = _weights_file(output)
        if weights is None:
            raise TrainingFailed(
                "The training returned no weights: train() must return a Path, or an object with a `weights` Path."
            )
        if not weights.is_file():
            raise TrainingFailed(f"The training's weights {weights.name} are not a file.")
        if rec.destination is None:
            raise TrainingFailed("The training has no destination model.")
        try:
            version = await self.catalog.add_trained_version(rec.destination, source, weights)
        except ServingError as exc:
            raise TrainingFailed(f"The trained version of {rec.destination} could not be made: {exc.message}") from None
        url = await self.files.publish_outputs({FILE_MARKER: str(weights)}, self.config.output_inline_max_bytes)
        return {"version": f"{rec.destination}:{version}", "weights": url}  # as Replicate's training output

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop accepting; queued predictions are canceled, running ones get `grace_s` (default: the config's)
        to finish, then are canceled; the models' processes stop; nothing accepted stays unfinished."""
        if self.state in (ServerState.DRAINING, ServerState.STOPPED):
            return
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        was_started = hasattr(self, "models")
        self.state = ServerState.DRAINING
        if not was_started:
            self.state = ServerState.STOPPED
            return
        runtimes = [*self.models, *self.models.trainers.values()]
        await asyncio.gather(*(rt.drain(grace) for rt in runtimes), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.leases.stop()
        self.rewrite_unwritten(self._ctx)
        self._ctx.writer.close()
        if self.gate is not None:
            await self.gate.stop()
        await self.webhooks.aclose()
        await self.files.aclose()
        self.rag.close()
        if self._given_store is None:
            self.store.close()
        self.state = ServerState.STOPPED

    @property
    def ctx(self) -> RuntimeContext:
        """What every model's runtime shares (the store and its pool among it)."""
        return self._ctx

    def check_destination(self, name: str) -> None:
        """A training's destination must be a model of the hub (`ModelNotFound`, `InvalidModelName`);
        `InvalidRequest` when this server has no hub to keep trained versions in."""
        if self.catalog is None:
            raise InvalidRequest("This server keeps no trained versions (it has no hub).", param="destination")
        self.catalog.check_destination(name)

    def model_of(self, rec: PredictionRecord) -> ServedModel | None:
        """The model (the version) that ran a prediction, if this server serves it."""
        runtimes = self.models.trainers if rec.kind == "training" else self.models.runtimes
        runtime = runtimes.get((rec.model or "", rec.version or ""))
        return runtime.model if runtime is not None else None

    def check_accepting(self) -> None:
        if self.state is not ServerState.READY:
            raise ShuttingDown(
                "The server is starting." if self.state is ServerState.STARTING else "The server is shutting down.",
                retry_after_s=1 if self.state is ServerState.STARTING else None,
            )

    # ---- retrieval

    async def retrieve(self, config: RagConfig, question: str, model: ServedModel) -> Retrieval:
        """The passages for `question` (rewritten into a search query by `model` first when `config.rewrite`),
        screened (`cocina.serving.retrieval.screen_passages`)."""
        query = await self._rewrite(model, question) if config.rewrite else question
        # `rewritten` only when the model's words were searched (it falls back to the question otherwise)
        return await retrieve(self.rag, config, query, rewritten=config.rewrite and query != question)

    async def _rewrite(self, model: ServedModel, question: str) -> str:
        """The seed's "a language model writes the query for a vector search": greedy, at most 32 tokens, the
        first line with words in it (quotes around it dropped); the question itself when the model says nothing
        usable (under 3 characters)."""
        from cocina.worker.events import GenerationEnd, Tokens

        await model.wait_loaded(self.config.load_timeout_s)
        try:
            ids = await model.encode(messages=[{"role": "user", "content": REWRITE_PROMPT.format(question=question)}])
        except ValueError:
            return question
        params = GenerationOptions(max_tokens=32, temperature=0.0).to_params()
        text = ""
        async for ev in model.generate(ids, params, generation_id=new_id()):
            if isinstance(ev, Tokens):
                text += ev.text
                if "\n" in text.lstrip():  # the first line with words is finished: that is the query
                    break  # (leaving the iteration cancels the rest of the generation)
            elif isinstance(ev, GenerationEnd):
                break
        query = first_line(text)
        return query if len(query) >= 3 else question

    # ---- predictions

    async def admit(self, req: AdmissionRequest) -> Admitted:
        """Start a prediction: see `cocina.serving.admission`."""
        return await admit(self, req)

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """The prediction as it stands (in memory while active, else from the store)."""
        active = self.book.find(prediction_id)
        if active is not None:
            return active.record
        return self.store.get(prediction_id)

    async def wait(self, prediction_id: str, timeout_s: float | None) -> PredictionRecord | None:
        """Wait (up to `timeout_s`) for the prediction to finish; returns it as it stands then. A prediction
        another server sharing the store runs is followed through the store."""
        active = self.book.active.get(prediction_id)
        if active is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(active.done.wait(), timeout_s)
            return self.get(prediction_id)
        rec = self.get(prediction_id)
        if rec is None or rec.status.is_terminal:
            return rec
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for changed in self._store_changes(prediction_id):
                    rec = changed
                    if rec.status.is_terminal:
                        break
        return rec

    async def events(self, prediction_id: str, *, late: bool = False) -> AsyncIterator[PredictionEvent]:
        """Every event of the prediction from its start, live, ending with `Completed` (replayed from the
        store when it is no longer in memory, and followed through the store when another server sharing it
        runs the prediction: a client re-attaches to its stream by id at any replica).

        `late`: a subscriber to a prediction already under way, as Cog replays one: at most the model's
        `COG_STREAM_HISTORY_CAPACITY` past events. When more have happened, the stream is one
        `ReplayTruncated` (how many were dropped); with a capacity of 0 nothing past is replayed, only what
        happens from now on (a prediction that has ended gives its `Completed`)."""
        active = self.book.find(prediction_id)
        if active is not None:
            rec, past = active.record, active.events
        else:
            stored = self.store.get(prediction_id)
            if stored is None:
                return
            rec, past = stored, replay(stored, self._iterator_output(stored))
        start = 0
        if late:
            capacity = self._history_capacity(rec)
            if capacity and len(past) > capacity:
                yield ReplayTruncated(len(past) - capacity)
                return
            if capacity == 0:
                start = len(past)
                if past and isinstance(past[-1], Completed):
                    start -= 1  # nothing more will happen: the subscriber still learns how it ended
        if active is not None:
            async for ev in ModelRuntime.follow(active, start):
                yield ev
            return
        if rec.status.is_terminal:
            for ev in past[start:]:
                yield ev
            return
        # Another server sharing the store runs it: followed through the store (only what comes next, for a
        # late subscriber that is replayed nothing).
        async for ev in self._follow_remote(rec, skip_past=start > 0):
            yield ev

    def _history_capacity(self, rec: PredictionRecord) -> int:
        model = self.model_of(rec)
        return model.stream_history_capacity if model is not None else DEFAULT_STREAM_HISTORY_CAPACITY

    async def _store_changes(self, prediction_id: str) -> AsyncGenerator[PredictionRecord, None]:
        """The prediction as stored, each time it may have changed: when the store says it was written
        (PostgreSQL's notifications), and at least every `remote_poll_s` (SQLite, or a missed notification).
        Ends if the prediction disappears; a store that fails now and then is retried."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def told() -> None:
            loop.call_soon_threadsafe(changed.set)

        unwatch = self.store.watch(prediction_id, told)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.remote_poll_s)
                changed.clear()
                try:
                    rec = self.store.get(prediction_id)
                except StoreError:
                    continue  # the store is restarting: the prediction goes on somewhere; look again
                if rec is None:
                    return
                yield rec
        finally:
            unwatch()

    async def _follow_remote(self, rec: PredictionRecord, *, skip_past: bool = False) -> AsyncIterator[PredictionEvent]:
        """Events rebuilt from the stored record as its server writes it (logs and iterator output are flushed
        every half second there): new log text and new output items, then the final output and `Completed`.
        `skip_past`: only what happens after `rec` (a late subscriber replayed nothing)."""
        iterator = self._iterator_output(rec)
        started = False
        logs_sent = 0
        outputs_sent = 0
        if skip_past:
            started = rec.status is not PredictionStatus.STARTING
            logs_sent = len(rec.logs)
            outputs_sent = len(rec.output) if iterator and isinstance(rec.output, list) else 0
        current: PredictionRecord | None = rec
        changes = self._store_changes(rec.id)
        try:
            while current is not None:
                if not started and current.status is not PredictionStatus.STARTING:
                    started = True
                    yield Started()
                if len(current.logs) < logs_sent:
                    logs_sent = 0  # re-run from scratch elsewhere (its server died): its logs start again
                if len(current.logs) > logs_sent:
                    yield LogChunk(current.logs[logs_sent:], "stdout")
                    logs_sent = len(current.logs)
                if iterator and isinstance(current.output, list):
                    # A re-run from scratch yields the same items again: only those beyond what was sent go out.
                    for i in range(outputs_sent, len(current.output)):
                        yield OutputChunk(current.output[i], i)
                    outputs_sent = max(outputs_sent, len(current.output))
                if current.status.is_terminal:
                    if not started:
                        yield Started()
                    if not iterator and current.output is not None:
                        yield OutputChunk(current.output, 0)
                    yield Completed(current.status)
                    return
                current = await anext(changes, None)
        finally:
            await changes.aclose()

    def _iterator_output(self, rec: PredictionRecord) -> bool:
        runtime = self.models.by_name.get(rec.model or "")
        schema = (runtime.model.schema if runtime is not None else None) or {}
        output = schema.get("components", {}).get("schemas", {}).get("Output", {})
        return bool(output.get("x-cog-array-type") == "iterator")

    def cancel(self, prediction_id: str, reason: CancelReason = CancelReason.USER) -> PredictionRecord | None:
        """Cancel a queued or running prediction; returns it as it stands (None if unknown). A running one
        stops in the background (its record says so once it has)."""
        active = self.book.active.get(prediction_id)
        if active is None:
            return self.get(prediction_id)
        active.runtime.cancel(active, reason)
        return active.record

    def page(
        self, before_seq: int | None, limit: int, *, kind: str | None = "prediction", **filters: str | None
    ) -> list[PredictionRecord]:
        """Newest first, each as it stands (an active prediction's freshest state is in memory); predictions
        only unless `kind` says otherwise ("training"; None: both); `filters` are the store's (`model`,
        `version`, `status`, `source`, `principal`: an API key's own)."""
        records = self.store.page(before_seq, limit, kind=kind, **filters)
        return [self.get(r.id) or r for r in records]

    # ---- state

    def run_counts(self) -> dict[str, int]:
        return self.store.run_counts()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the server can serve (READY, and every warm model loaded), and what each model is doing."""
        models: dict[str, str] = {}
        for rt in getattr(self, "models", []):
            # Each name's default version under its name; other versions as `name:version`.
            default = self.models.by_name.get(rt.model.name) is rt
            models[rt.model.name if default else f"{rt.model.name}:{rt.model.version}"] = rt.model.state.value
        warm_ready = all(rt.model.state is ModelState.READY for rt in getattr(self, "models", []) if rt.model.warm)
        ok = self.state is ServerState.READY and warm_ready
        status = "ok" if ok else ("starting" if self.state in (ServerState.STARTING, ServerState.READY) else "draining")
        failed = [n for n, s in models.items() if s == ModelState.FAILED.value]
        if self.state is ServerState.READY and not warm_ready and failed:
            status = "unhealthy"
        return ok, {"status": status, "models": models}

    async def wait_warm(self, timeout_s: float) -> None:
        """Until every warm model is loaded; `ModelUnavailable` naming the first that failed or is too slow
        (a replica's start-up: it takes no traffic before its models are loaded)."""
        warm = [rt.model for rt in self.models if rt.model.spec.warm]
        await asyncio.gather(*(model.wait_loaded(timeout_s) for model in warm))

    def unhealthy(self) -> str | None:
        """Why this server cannot serve and will not recover by itself (a warm model's setup failed, or it has
        stopped); None while it can serve or is loading. A replica manager replaces the server then."""
        if self.state is ServerState.STOPPED:
            return "the server has stopped"
        for rt in getattr(self, "models", []):
            if rt.model.spec.warm and rt.model.state is ModelState.FAILED:
                return str(rt.model.unavailable().message)
        return None

    async def engine_stats(self, timeout_s: float = 1.0) -> dict[str, dict[str, Any]]:
        """Each loaded language model's engine statistics (a model that does not answer in time is left out)."""
        runtimes = [rt for rt in self.models if rt.model.state is ModelState.READY and rt.model.language_model_info]

        async def one(rt: ModelRuntime) -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(rt.model.engine_stats(), timeout_s)
            except Exception:
                return None

        results = await asyncio.gather(*(one(rt) for rt in runtimes))
        return {rt.model.name: r for rt, r in zip(runtimes, results, strict=True) if r}

    # ---- retention

    def apply_retention(self) -> int:
        """Remove inputs and outputs of predictions completed more than `retention_s` ago; how many."""
        if self.config.retention_s is None:
            return 0
        cutoff = (datetime.now(UTC) - timedelta(seconds=self.config.retention_s)).isoformat()
        n = self.store.remove_data_before(cutoff)
        if n:
            old = [p for p, a in self.book.recent.items() if a.record.completed_at and a.record.completed_at < cutoff]
            for pid in old:
                self.book.recent.pop(pid, None)
        return n

    async def _retention_loop(self, retention_s: float) -> None:
        period = min(max(retention_s / 4, 0.05), 60.0)
        while True:
            try:
                self.apply_retention()
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(period)


def _weights_file(output: Any) -> Path | None:
    """The file a training returned as its weights: the output itself, or its `weights` field."""
    if isinstance(output, dict) and set(output) == {FILE_MARKER}:
        return Path(str(output[FILE_MARKER]))
    if isinstance(output, dict) and isinstance(output.get("weights"), dict):
        return _weights_file(output["weights"])
    return None
