"""`ServedModel`: one model in its own process (a worker child), loaded on demand, reloaded after a crash.

The process is cocina's worker (`cocina.worker.Runner`): a Cog predictor runs there as in `cocina predict`, and a
language model's engine runs there too, reached through the runner's generation channel. A predictor that
segfaults or an engine that dies takes down only this process: its running predictions end with the reason,
the model becomes `UNLOADED`, and it is loaded again when next needed.

Lifecycle (`ModelState`): UNLOADED -> LOADING -> READY | FAILED; READY -> UNLOADED (process died or unloaded to
make room); any -> STOPPED at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cocina.serving.errors import InvalidInput, ModelUnavailable
from cocina.serving.spec import ModelSpec
from cocina.store import utc_now

if TYPE_CHECKING:
    from cocina.sdk.schema import InputValidator
    from cocina.worker.runner import Runner

log = logging.getLogger("cocina.serving")


class ModelState(enum.StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # setup failed: predictions get its error until the server restarts
    STOPPED = "stopped"


@dataclass(frozen=True)
class SetupInfo:
    """How the last load went; Cog's `/health-check` shows it."""

    status: str  # "succeeded" | "failed"
    logs: str = ""
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def process_rss_bytes(pid: int | None) -> int | None:
    """Resident memory of a process (Linux `/proc`), or None when it cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class ServedModel:
    """One model: its spec, its process and what is known of it (schema, whether it is a language model)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        schema: dict[str, Any] | None = None,
        language_model: dict[str, Any] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.warm = spec.warm  # kept loaded (the default model, --warm, a deployment's min_instances)
        self.state = ModelState.UNLOADED
        self.runner: Runner | None = None
        self.schema = schema  # the predictor's Cog OpenAPI document (cached from an earlier load, or None)
        self.language_model_info = language_model  # {"max_model_len": N, ...} once loaded
        self.setup: SetupInfo | None = None
        self.version_created_at = utc_now()  # when this version was first served (from the store)
        self.last_used = time.monotonic()
        self.loaded_at: float | None = None
        self.load_count = 0
        self.last_exit: str | None = None
        self.rss_bytes: int | None = None  # measured after the last load
        self.on_change = on_change or (lambda: None)
        self._validator: InputValidator | None = None
        self._loading: asyncio.Task[SetupInfo] | None = None
        # How a load is asked for: the server's model set makes room first (unloading idle models); alone, a
        # model just starts loading.
        self.loader: Callable[[ServedModel], Coroutine[Any, Any, None]] | None = None
        self._requested: asyncio.Task[None] | None = None
        self._schema_event = asyncio.Event()
        if schema is not None:
            self._schema_event.set()

    # ---- what is known

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def is_language_model(self) -> bool:
        """A language model: known after a load, else read from the project's files."""
        if self.language_model_info is not None:
            return True
        if self.state is ModelState.READY:
            return False
        return self.spec.language_model

    @property
    def max_model_len(self) -> int | None:
        info = self.language_model_info or {}
        value = info.get("max_model_len")
        return int(value) if value is not None else None

    @property
    def max_concurrency(self) -> int:
        """Predictions the model runs at once (known once loaded; 1 before)."""
        runner = self.runner
        if runner is None or self.state is not ModelState.READY:
            return 1
        if self.language_model_info is not None and self.spec.engine is not None:
            return max(1, int(self.spec.engine.config.get("max_num_seqs", 1)))
        return max(1, int(runner.concurrency))

    @property
    def pid(self) -> int | None:
        return self.runner.pid if self.runner is not None else None

    def validate(self, raw_input: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized input (defaults filled, unknown fields dropped), or `InvalidInput`."""
        from cocina.sdk.schema import InputValidationError, InputValidator

        assert self.schema is not None, "validate() before the schema is known"
        if self._validator is None:
            self._validator = InputValidator(self.schema)
        try:
            normalized: dict[str, Any] = self._validator.validate(dict(raw_input))
        except InputValidationError as exc:
            raise InvalidInput(exc.errors) from None
        return normalized

    # ---- loading

    def start_loading(self) -> asyncio.Task[SetupInfo]:
        """Start loading now if not loaded or loading; the task ends with how the load went."""
        if self._loading is None or (self._loading.done() and self.state is ModelState.UNLOADED):
            self._loading = asyncio.get_running_loop().create_task(self._load())
        return self._loading

    def request_load(self) -> asyncio.Task[None]:
        """Ask for the model to be loaded, through `loader` (room made first) when there is one. The task
        raises `ModelUnavailable` when no room could be made in time."""
        if self._requested is None or self._requested.done():
            self._requested = asyncio.get_running_loop().create_task(self._request())
            # Whoever waits reads the outcome; nobody waiting must not leave an unread exception behind.
            self._requested.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._requested

    async def _request(self) -> None:
        if self.state in (ModelState.READY, ModelState.FAILED, ModelState.STOPPED):
            return
        if self.loader is not None:
            await self.loader(self)
        else:
            await self.start_loading()

    async def _load(self) -> SetupInfo:
        from cocina.worker.runner import Runner

        self.state = ModelState.LOADING
        self.on_change()
        started = utc_now()
        runner = Runner(
            self.spec.project,
            engine=self.spec.engine.to_child() if self.spec.engine is not None else None,
            env_overrides=dict(self.spec.env),
            restart_on_exit=False,
            on_exit=self._exited,
            max_queue=1_000_000,  # serving bounds the queue; the runner only holds what serving sent it
            python=self.spec.python,
        )
        self.runner = runner
        self.load_count += 1
        log.info("loading model %s (%s)", self.name, self.spec.source)
        t0 = time.monotonic()
        # The schema comes as soon as predict.py is imported, before setup() ends: inputs can be validated (and
        # predictions admitted) while the model still loads.
        schema_task = asyncio.get_running_loop().create_task(runner.wait_schema())
        schema_task.add_done_callback(self._schema_arrived)
        try:
            result = await runner.start()
        except Exception as exc:  # the runner reports user errors itself; this is cocina failing
            log.exception("loading model %s failed", self.name)
            info = SetupInfo("failed", "", started, utc_now(), f"{type(exc).__name__}: {exc}")
            self._failed(info)
            return info
        finally:
            schema_task.cancel()
        with contextlib.suppress(RuntimeError):  # no schema: predict.py did not import (a failed setup)
            if self.schema is None or not self._schema_event.is_set():
                self.schema = runner.openapi_schema
                self._validator = None
                self._schema_event.set()
        info = SetupInfo(
            str(result.status.value),
            result.logs,
            _iso(result.started_at) or started,
            _iso(result.completed_at),
            result.error,
        )
        self.setup = info
        for line in info.logs.splitlines():
            log.info("%s: %s", self.name, line)  # the model's setup output, on the server's terminal too
        if self.state is ModelState.STOPPED:
            await runner.shutdown(grace_s=0)
            return info
        if result.status.value != "succeeded":
            self._failed(info)
            return info
        self.language_model_info = runner.language_model
        self.state = ModelState.READY
        self.loaded_at = time.monotonic()
        self.rss_bytes = process_rss_bytes(runner.pid)
        log.info("model %s loaded in %.1f s", self.name, time.monotonic() - t0)
        self.on_change()
        return info

    def _schema_arrived(self, task: asyncio.Task[dict[str, Any] | None]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        schema = task.result()
        if schema is not None:
            self.schema = schema
            self._validator = None
            self._schema_event.set()

    def _failed(self, info: SetupInfo) -> None:
        self.setup = info
        if self.state is not ModelState.STOPPED:
            self.state = ModelState.FAILED
        log.error("model %s failed to load: %s", self.name, info.error)
        self._schema_event.set()  # nobody waits for a schema that will not come
        self.on_change()

    def _exited(self, reason: str) -> None:
        """The model's process died while it was loaded: its predictions have failed; load again when needed."""
        if self.state is not ModelState.READY:
            return
        self.last_exit = reason
        self.state = ModelState.UNLOADED
        log.warning("model %s: its process %s; it will be loaded again when next used", self.name, reason)
        self.on_change()

    async def wait_schema(self, timeout_s: float) -> dict[str, Any]:
        """The predictor's schema: cached, or once the loading process has imported predict.py."""
        if self.schema is None:
            requested = self.request_load() if self.state is ModelState.UNLOADED else None
            waiter = asyncio.ensure_future(self._schema_event.wait())
            pending = {waiter, *([requested] if requested is not None else [])}
            try:
                done, _ = await asyncio.wait(pending, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
                if requested in done and requested is not None and requested.exception() is not None:
                    raise requested.exception()  # type: ignore[misc]  # no room to load it
                if requested in done and self.schema is None:
                    with contextlib.suppress(TimeoutError):  # loaded: the schema is a moment away
                        await asyncio.wait_for(self._schema_event.wait(), 1.0)
            finally:
                waiter.cancel()
        if self.schema is None:
            raise self.unavailable(still_loading=self.state is ModelState.LOADING)
        return self.schema

    async def wait_loaded(self, timeout_s: float) -> None:
        """Until the model is READY (loading it if needed); `ModelUnavailable` if it fails or takes too long."""
        deadline = time.monotonic() + timeout_s
        while self.state is not ModelState.READY:
            if self.state in (ModelState.FAILED, ModelState.STOPPED):
                raise self.unavailable()
            task = self.request_load() if self.state is ModelState.UNLOADED else self._loading
            left = deadline - time.monotonic()
            if left <= 0 or task is None:
                raise self.unavailable(still_loading=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), left)

    def unavailable(self, *, still_loading: bool = False) -> ModelUnavailable:
        """Why predictions cannot run now, as the error clients get."""
        if self.state is ModelState.FAILED:
            error = (self.setup.error if self.setup else None) or "see its setup logs"
            return ModelUnavailable(f"The model {self.name} failed to set up: {error.splitlines()[0]}")
        if self.state is ModelState.STOPPED:
            return ModelUnavailable("The server is shutting down.")
        return ModelUnavailable(
            f"The model {self.name} is still loading." if still_loading else f"The model {self.name} is not loaded.",
            retry_after_s=5,
        )

    async def unload(self, grace_s: float = 5.0, *, stopping: bool = False) -> None:
        """Stop the model's process (running predictions get `grace_s` to finish)."""
        runner = self.runner
        self.state = ModelState.STOPPED if stopping else ModelState.UNLOADED
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.shutdown(grace_s=grace_s)
        self.runner = None
        self.loaded_at = None
        self.on_change()

    # ---- running (the model must be READY)

    def _runner(self) -> Runner:
        runner = self.runner
        if runner is None or self.state is not ModelState.READY:
            raise self.unavailable()
        return runner

    def predict(self, inputs: dict[str, Any], prediction_id: str) -> AsyncIterator[Any]:
        """The worker's events (`Log`, `Output`, then one `Done`)."""
        self.last_used = time.monotonic()
        return self._runner().predict(inputs, prediction_id=prediction_id)

    def generate(self, prompt_ids: list[int], params: Mapping[str, Any], generation_id: str) -> AsyncIterator[Any]:
        """The engine's events (`Tokens`, then one `GenerationEnd`)."""
        self.last_used = time.monotonic()
        return self._runner().generate(prompt_ids, params, generation_id=generation_id)

    async def encode(self, *, text: str | None = None, messages: list[dict[str, Any]] | None = None) -> list[int]:
        """Token ids (ValueError when the model refuses the input)."""
        try:
            return await self._runner().encode(text=text, messages=messages)
        except RuntimeError:
            raise self.unavailable() from None

    async def cancel(self, prediction_id: str) -> None:
        runner = self.runner
        if runner is not None:
            await runner.cancel(prediction_id)

    async def engine_stats(self) -> dict[str, Any] | None:
        """The engine's statistics (None for a predictor without an engine, or a model not loaded)."""
        runner = self.runner
        if runner is None or self.state is not ModelState.READY or self.language_model_info is None:
            return None
        return await runner.stats()
