"""The Replicate HTTP API v1, enough for the official `replicate` client 1.x to work with a base URL: predictions,
models and versions (with cocina's push), deployments with weighted releases, files."""

from fastapi import APIRouter

from cocina.server.replicate import blobs, deployments, files, models, predictions
from cocina.server.replicate.render import replicate_prediction

router = APIRouter()
for _module in (predictions, models, deployments, files, blobs):
    router.include_router(_module.router)

__all__ = ["replicate_prediction", "router"]
