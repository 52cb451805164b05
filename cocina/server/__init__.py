"""`cocina serve`: the Cog HTTP API, the Replicate v1 API and the OpenAI API over one predictor, with a
durable store.

Modules, one concept each:

- `settings`: `ServerSettings`, built once by the CLI and passed down.
- `backend`: the `PredictorBackend` / `TextGenerator` protocols the server depends on, and their event types.
- `store`: the SQLite (WAL) store of predictions and its crash recovery.
- `runtime`: the bounded queue and workers that run predictions and fan their events out.
- `webhooks`: webhook delivery with retries and throttled progress events.
- `errors`: the domain exceptions and one exception → error-body mapping per surface.
- `middleware`: pure ASGI middleware: request id + access log, body size limit.
- `cog_api`, `replicate_api`, `openai_api`: the three HTTP surfaces.
- `app`: `create_app(settings, backend)`.
- `cli`: `cocina serve`.
"""
