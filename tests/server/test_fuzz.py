"""Schema-driven fuzzing with schemathesis over the server's own `/openapi.json`: no 5xx, responses match
the schema."""

from __future__ import annotations

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

from tests.server.conftest import start_server
from tests.server.fixtures.backends import EchoBackend

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_openapi(tmp_path: Path, mode: GenerationMode) -> None:
    srv = start_server(tmp_path / "d", EchoBackend(delay_scale=0.0), max_queue=1000, concurrency=4)
    try:
        schema = schemathesis.openapi.from_dict(srv.client.get("/openapi.json").json())
        operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {op.path for op in operations} >= {"/predictions", "/predictions/{prediction_id}"}
        codes: list[int] = []
        for op in operations:
            if op.path == "/shutdown":
                continue  # it would stop the server under test; tested in test_cog_api
            if mode is GenerationMode.NEGATIVE and not len(op.body):
                continue  # nothing to make invalid: no body

            @hypothesis.settings(
                max_examples=40 if op.method.upper() in ("POST", "PUT") else 5,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                if isinstance(case.body, dict):
                    case.body.pop("webhook", None)  # no calls to the random hosts the fuzzer invents
                response = case.call_and_validate(base_url=srv.url, checks=CHECKS)
                codes.append(response.status_code)

            run()
        assert srv.client.get("/health-check").json()["status"] == "READY"
        if mode is GenerationMode.POSITIVE:
            assert codes.count(200) + codes.count(202) > 10
            assert sum(srv.runtime.store.count_by_status().values()) > 10  # the fuzzer really ran predictions
    finally:
        srv.stop()
