"""Serving: many models, each in its own process, behind one admission function (no HTTP here).

`Serving` holds a server's models (`ModelSpec` -> `ServedModel` in a worker process, with a `ModelRuntime`
queue each), the store, leases, files and webhooks. Every API calls `Serving.admit` to start a prediction and
follows it as a typed stream of events (`cocina.serving.events`). Errors are domain errors
(`cocina.serving.errors`); the HTTP layer maps them to each API's format.
"""

from cocina.serving.admission import AdmissionRequest, Admitted
from cocina.serving.config import ServingConfig
from cocina.serving.model import ModelState, ServedModel
from cocina.serving.runtime import CancelReason
from cocina.serving.service import ServerState, Serving
from cocina.serving.spec import ModelSpec

__all__ = [
    "AdmissionRequest",
    "Admitted",
    "CancelReason",
    "ModelSpec",
    "ModelState",
    "ServedModel",
    "ServerState",
    "Serving",
    "ServingConfig",
]
