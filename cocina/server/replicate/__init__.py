"""The Replicate HTTP API v1, enough for the official `replicate` client 1.x to work with a base URL: predictions,
trainings, models and versions (with cocina's push), deployments with weighted releases, files; and cocina's
indexes."""

from fastapi import APIRouter

from cocina.server.replicate import blobs, deployments, files, indexes, models, predictions, trainings
from cocina.server.replicate.render import replicate_prediction, replicate_training

router = APIRouter()
for _module in (predictions, trainings, models, deployments, files, blobs, indexes):
    router.include_router(_module.router)

__all__ = ["replicate_prediction", "replicate_training", "router"]
