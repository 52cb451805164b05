"""The audit log over HTTP: the latest signed checkpoint, the log's public key, inclusion proofs of a
prediction's entry and consistency proofs between two sizes (RFC 9162; C2SP checkpoints). Errors are Replicate's
problem+json (these are `/v1/` paths). A key sees proofs of its own predictions only (all with `admin`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from cocina.server.errors import BadRequest, NotFound
from cocina.server.state import may_see, serving_of

router = APIRouter(prefix="/v1/audit")


def _log(request: Request) -> Any:
    guard = getattr(request.app.state, "guard", None)
    if guard is None or guard.audit is None:
        raise NotFound("This server keeps no audit log.")
    return guard.audit


@router.get("/checkpoint")
async def checkpoint(request: Request) -> Response:
    """The latest signed checkpoint (text/plain, the C2SP signed-note format)."""
    return PlainTextResponse(_log(request).checkpoint().note)


@router.get("/key")
async def key(request: Request) -> Response:
    """The verifier key of the log's checkpoints (`<name>+<hex id>+<base64 key>`)."""
    return PlainTextResponse(_log(request).verifier.encode() + "\n")


@router.get("/proof/{prediction_id}")
async def inclusion(request: Request, prediction_id: str, size: int | None = None) -> dict[str, Any]:
    """The prediction's audit entry and its inclusion proof against the latest checkpoint (or `size`'s)."""
    from cocina.guard.audit.merkle import ProofError

    audit = _log(request)
    serving = serving_of(request)
    entry = serving.store.audit_entry_for(prediction_id)
    if entry is None or not may_see(request, serving.get(prediction_id)):
        raise NotFound("No audit entry for that prediction.")
    try:
        result: dict[str, Any] = audit.inclusion(entry.idx, size)
    except ProofError as exc:
        raise BadRequest(str(exc)) from None
    return result


@router.get("/consistency")
async def consistency(request: Request, first: int, second: int | None = None) -> dict[str, Any]:
    """A consistency proof from the log's first `first` entries to the latest checkpoint (or `second`'s)."""
    from cocina.guard.audit.merkle import ProofError

    if first < 0:
        raise BadRequest("first must be >= 0")
    try:
        result: dict[str, Any] = _log(request).consistency(first, second)
    except ProofError as exc:
        raise BadRequest(str(exc)) from None
    return result
