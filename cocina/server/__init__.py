"""`cocina serve`'s HTTP layer: the Cog, Replicate v1 and OpenAI APIs over `cocina.serving` (HTTP only).

- `app`: `create_app(serving, config)`; `serve`: uvicorn with drain; `cli`: `cocina serve`.
- `cog/`, `replicate/`, `openai/`: one subpackage per API: routes, request bodies, rendering in its wire format.
- `middleware/`: pure ASGI: request id + access log, token auth (every route but the probes), body size limit.
- `errors`: serving's errors and HTTP's own, mapped once to each API's error body.
- `metrics`: `/metrics` (Prometheus), labelled by model; `openapi_v1`: `/v1/openapi.json`.
"""
