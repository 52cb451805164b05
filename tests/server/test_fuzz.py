"""Schema-driven fuzzing with schemathesis over the server's own documents: no 5xx, responses match them.

`/v1/openapi.json` describes every surface (Cog, Replicate v1, OpenAI) and every model (here the echo predictor
and a tiny language model, each in its own process), so every path is fuzzed, with positive and negative data;
`/openapi.json` must stay exactly Cog's (its paths only).
"""

from __future__ import annotations

import time
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.conftest import echo_spec, llm_spec, start_server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
COG_PATHS = {
    "/",
    "/health-check",
    "/predictions",
    "/predictions/{prediction_id}",
    "/predictions/{prediction_id}/cancel",
    "/shutdown",
}
GENERATING = (
    "POST /predictions",
    "POST /v1/predictions",
    "POST /v1/models/acme/echo/predictions",
    "POST /v1/completions",
    "POST /v1/chat/completions",
)
# Bodies make most of the difference between cases; reads get a few examples each (the run stays < ~30 s).
MAX_EXAMPLES = {"post": 25, "put": 25, "delete": 5, "get": 4}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_every_path(tmp_path: Path, mode: GenerationMode, tiny_model: Path) -> None:
    srv = start_server(
        tmp_path / "d",
        # Fuzzed delays would add up to minutes: the echo predictor makes them instant.
        [echo_spec(env={"ECHO_DELAY_SCALE": "0"}, warm=True), llm_spec(tiny_model, "acme/tiny", warm=True)],
        max_queue=1000,
        concurrency=4,
        max_tokens_limit=32,
    )
    try:
        deadline = time.monotonic() + 60
        while srv.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert set(srv.client.get("/openapi.json").json()["paths"]) == COG_PATHS
        schema = schemathesis.openapi.from_dict(srv.client.get("/v1/openapi.json").json())
        operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
        paths = {op.path for op in operations}
        assert paths >= COG_PATHS | {"/v1/predictions", "/v1/chat/completions", "/v1/completions", "/v1/files"}
        assert {"/v1/models/acme/echo/predictions", "/v1/models/acme/tiny/predictions", "/health"} <= paths
        codes: dict[str, list[int]] = {}
        started = time.monotonic()
        for op in operations:
            if op.path == "/shutdown":
                continue  # it would stop the server under test; tested in test_cog_api
            if mode is GenerationMode.NEGATIVE and not len(op.body) and not op.path_parameters and not op.query:
                continue  # nothing to make invalid

            @hypothesis.settings(
                max_examples=MAX_EXAMPLES[op.method.lower()],
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                if isinstance(case.body, dict):
                    for key in ("webhook", "webhook_completed"):
                        case.body.pop(key, None)  # no calls to the random hosts the fuzzer invents
                response = case.call_and_validate(base_url=srv.url, checks=CHECKS)
                codes.setdefault(case.operation.label, []).append(response.status_code)

            run()
        elapsed = time.monotonic() - started
        assert srv.client.get("/health-check").json()["status"] == "READY"
        if mode is GenerationMode.POSITIVE:
            ok = {label: c for label, c in codes.items() if any(200 <= x < 300 for x in c)}
            # The fuzzer really ran predictions and generations, on every surface.
            for label in GENERATING:
                assert label in ok, (label, codes.get(label))
                assert sum(srv.serving.run_counts().values()) > 20
        assert elapsed < 60, elapsed
    finally:
        srv.stop()
