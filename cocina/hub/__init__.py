"""The hub: pushed models and their immutable versions (content-addressed files, per-version environments),
and deployments with weighted, numbered releases. No HTTP here: `cocina.server` exposes it, `cocina push` and the
CLI use it (`cocina.hubctl`: locally, or over HTTP)."""

from cocina.hub.hub import Hub, PushResult

__all__ = ["Hub", "PushResult"]
