"""The one way in: `admit` is what every API calls to start a prediction.

In order: an existing id answers with its prediction (idempotent PUT); the server must be accepting; the
reference resolves to a served model (and version) — for a training, to that version's `train` runtime, and the
destination must be a model; the gate (the guard, when configured) checks the principal against the model and its
request rate; the input is checked against the model's schema (its training schema for a training; a
language-model request is planned on the model's tokenizer instead, and its tokens reserved against the key's
limits) and scanned (invisible characters stripped, secrets and PII redacted, injections blocked); with
retrieval (RAG), the passages found are put into the prompt; an event stream asked in Cog's way needs a predictor
marked `@streaming`; the model's queue must have room; then the prediction's row is written, leased to this
server, and only then queued. Nothing runs before its row exists, and a store that refuses the row refuses the
prediction (`StoreUnavailable`) with nothing started. A blocked input is recorded as a failed prediction, then
refused (`ContentBlocked`).

The scanners run before the row is written (not after, as docs/ARCHITECTURE.md first sketched) so that what
they redact never reaches the store's disk.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cocina.rag import Passage, RagConfig, augment_question
from cocina.serving.errors import InvalidRequest, StoreUnavailable, StreamingUnsupported
from cocina.serving.files import check_input_urls, new_id
from cocina.serving.gate import ContentBlocked, Principal, Ticket
from cocina.serving.jobs import GenerationJob, Job, PredictJob
from cocina.serving.model import ModelState, ServedModel
from cocina.serving.retrieval import Retrieval, question_of, sources_of
from cocina.serving.runtime import ActivePrediction
from cocina.store import PredictionRecord, PredictionStatus, StoreError, utc_now

if TYPE_CHECKING:
    from cocina.serving.service import Serving


@dataclass
class AdmissionRequest:
    """A request for a prediction, from any API.

    `model` is a Replicate reference (`owner/name`, `owner/name:version`, a version id), OpenAI's model name
    (with `generation`), or None for the default model (Cog's root API); `model_field` is the request field that
    named it (errors name it). `generation(model, input)` plans a language-model request on the resolved model
    from the (scanned) input (tokenizing, checking lengths) and raises serving errors for bad requests.
    `principal` is who asks (an API key), when the server has keys.
    """

    surface: str
    input: dict[str, Any]
    model: str | None = None
    model_field: str = "version"
    generation: Callable[[ServedModel, dict[str, Any]], Awaitable[GenerationJob]] | None = None
    prediction_id: str | None = None
    principal: Principal | None = None
    source: str = "api"
    deployment: str | None = None  # a deployment's name: it picks the version (the model is then not given)
    sticky_key: str | None = None  # keeps one user on one version of a deployment
    webhook: str | None = None
    webhook_events_filter: list[str] = field(default_factory=list)
    deadline: float | None = None  # epoch seconds
    context: dict[str, str] = field(default_factory=dict)  # Cog's request context (`current_scope().context`)
    kind: str = "prediction"  # "training": the version's `train:` entry point runs
    destination: str | None = None  # a training's destination model (`owner/name`)
    require_streaming: bool = False  # Cog's SSE: only for a predictor marked @streaming
    rag: RagConfig | None = None  # this request's retrieval options (OpenAI's `rag`), over the model's
    question: str | None = None  # what a generation request asks (the last user message): what RAG searches for
    retrieval: Retrieval | None = None  # filled by admission (with RAG) before `generation` runs

    @property
    def passages(self) -> list[Passage]:
        """The screened passages retrieval found for this request (none without RAG)."""
        return self.retrieval.passages if self.retrieval is not None else []


@dataclass
class Admitted:
    """The prediction as admitted; `created` is False when an existing id was asked for again."""

    record: PredictionRecord
    created: bool
    active: ActivePrediction | None = None
    ticket: Ticket | None = None  # what the gate decided (limits for the headers, the disclosure marker)


async def admit(serving: Serving, req: AdmissionRequest) -> Admitted:
    """Start a prediction (see the module's docstring); raises serving errors, never runs one without its row."""
    if req.kind not in ("prediction", "training"):
        raise ValueError(f"unknown kind {req.kind!r}")
    if req.prediction_id is not None:
        existing = serving.get(req.prediction_id)
        if existing is not None:
            if req.require_streaming:
                _check_streaming(serving.model_of(existing))
            return Admitted(existing, False)
    serving.check_accepting()
    models = serving.models
    route = None
    if req.deployment is not None:
        runtime, route = models.resolve_deployment(req.deployment, req.sticky_key)
    elif req.generation is not None:
        runtime = models.resolve_language_model(req.model or "")
    elif req.model is None:
        runtime = models.default
    else:
        runtime = models.resolve(req.model, req.model_field)
    if req.kind == "training":
        runtime = models.trainer(runtime, req.model_field)
        if req.destination is None:
            raise InvalidRequest("A training needs a destination model (owner/name).", param="destination")
        serving.check_destination(req.destination)
    model = runtime.model
    if model.state in (ModelState.FAILED, ModelState.STOPPED):
        raise model.unavailable()
    gate = serving.gate
    ticket = gate.check(req, model) if gate is not None else None
    timeout = serving.config.load_timeout_s
    # The request's retrieval options win over the deployment release's, which win over the model's.
    rag = req.rag or (route.rag if route is not None else None) or model.spec.rag
    if req.rag is not None and not model.is_language_model:
        raise InvalidRequest(f"{model.name} is not a language model: rag applies to language models", param="rag")
    job: Job
    shown = req.input
    try:
        if req.generation is not None:
            await model.wait_loaded(timeout)
            shown = gate.scan(ticket, req.input, model) if gate is not None and ticket is not None else req.input
            if rag is not None and req.question and (ticket is None or ticket.blocked is None):
                req.retrieval = await serving.retrieve(rag, req.question, model)
            job = await req.generation(model, shown)
            run_input = None  # an OpenAI request is answered once, to the client that asked: never re-run
            if gate is not None and ticket is not None and ticket.blocked is None:
                gate.reserve(ticket, sum(c.options.max_tokens for c in job.choices) + job.prompt_tokens)
        else:
            await model.wait_schema(timeout)
            if req.require_streaming:
                _check_streaming(model)
            run_input = model.validate(req.input)
            await check_input_urls(run_input, model.schema or {}, serving.config, serving.files)
            if gate is not None and ticket is not None:
                scanned = gate.scan(ticket, run_input, model)
                if ticket.redacted:
                    run_input = model.validate(scanned)
                    shown = run_input
            key, question = question_of(run_input)
            if (
                rag is not None
                and model.is_language_model
                and key is not None
                and question is not None
                and (ticket is None or ticket.blocked is None)
            ):
                req.retrieval = await serving.retrieve(rag, question, model)
                run_input = {**run_input, key: augment_question(question, req.passages)}
            job = PredictJob(run_input, dict(req.context))
        if ticket is None or ticket.blocked is None:
            runtime.check_room()
        rec = PredictionRecord(
            id=req.prediction_id or new_id(),
            model=model.name,
            version=model.version,
            deployment=req.deployment,
            release=route.release if route is not None else None,
            sources=sources_of(req.passages) if req.retrieval is not None else None,
            retrieval=req.retrieval.record() if req.retrieval is not None else None,
            principal=req.principal.id if req.principal is not None else None,
            source=req.source,
            surface=req.surface,
            input=shown,
            run_input=run_input,
            webhook=req.webhook,
            webhook_events_filter=list(req.webhook_events_filter),
            deadline=req.deadline,
            kind=req.kind,
            destination=req.destination,
            context=dict(req.context),
            lease_owner=serving.owner,
            lease_expires_at=time.time() + serving.config.lease_s,
            guard=dict(ticket.record) if ticket is not None else {},
        )
        if ticket is not None and ticket.blocked is not None:
            rec.status = PredictionStatus.FAILED
            rec.error = ticket.blocked
            rec.completed_at = utc_now()
            rec.run_input = None
        try:
            stored = gate.persist(rec) if gate is not None else rec
            inserted = await serving.ctx.writer.insert(stored)
        except StoreError as exc:
            raise StoreUnavailable(
                "The prediction could not be recorded, so it was not started; try again shortly.", retry_after_s=1
            ) from exc
    except BaseException:
        if gate is not None and ticket is not None:
            gate.release(ticket)
        raise
    if not inserted:
        if gate is not None and ticket is not None:
            gate.release(ticket)
        existing = serving.get(rec.id)  # another request with this id won the race since the check above
        assert existing is not None
        return Admitted(existing, False)
    if gate is not None and ticket is not None and ticket.blocked is not None:
        gate.finished(rec, ticket, 0)  # audited like any prediction
        with contextlib.suppress(StoreError):  # the row says it failed; only its audit position would be missing
            serving.store.update(gate.persist(rec))
        raise ContentBlocked(ticket.blocked, scanner=ticket.blocked_by or "guard", prediction_id=rec.id)
    active = runtime.enqueue(rec, job, ticket, gate.output_filter(ticket) if gate and ticket else None)
    return Admitted(rec, True, active, ticket)


def _check_streaming(model: ServedModel | None) -> None:
    """Cog streams events only from a predictor that opted in (`@streaming` on predict)."""
    if model is not None and model.streaming is False:
        raise StreamingUnsupported(
            "This model does not support streaming responses. Add @cog.streaming to predict() to enable SSE."
        )
