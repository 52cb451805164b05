"""Every kind of output, async predictors, Path inputs and log capture, each through a real child process."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocina.worker import OutputKind, PredictionStatus, SetupStatus

from .support import make_runner, run

SUCCEEDED = PredictionStatus.SUCCEEDED


async def test_value_output_with_setup_logs_and_the_project_environment() -> None:
    runner = make_runner("value_output")
    try:
        setup = await runner.start()
        assert setup.status is SetupStatus.SUCCEEDED
        assert setup.logs == "setting up\n"
        assert runner.output_kind is OutputKind.VALUE
        result = await run(runner, {"name": "ana", "times": 2})
        assert result.done is not None and result.done.status is SUCCEEDED
        assert result.outputs == ["hello ana\nhello ana"]
        assert result.text == "greeting ana\n"
    finally:
        await runner.shutdown()


async def test_file_output_is_reported_as_a_local_file() -> None:
    runner = make_runner("file_output")
    try:
        await runner.start()
        result = await run(runner, {"text": "abc"})
        (marker,) = result.outputs
        path = Path(marker["__cocina_file__"])
        assert path.read_text() == "ABC"
    finally:
        await runner.shutdown()


async def test_iterator_items_arrive_one_by_one_with_their_logs() -> None:
    runner = make_runner("iterator_output")
    try:
        await runner.start()
        assert runner.output_kind is OutputKind.ITERATOR
        result = await run(runner, {"n": 3})
        assert result.outputs == [0, 10, 20]
        assert result.text == "item 0\nitem 1\nitem 2\n"
    finally:
        await runner.shutdown()


async def test_concatenate_iterator() -> None:
    runner = make_runner("concatenate_output")
    try:
        await runner.start()
        assert runner.output_kind is OutputKind.CONCATENATE
        result = await run(runner, {"text": "uno dos tres"})
        assert result.outputs == ["uno", " dos", " tres"]
    finally:
        await runner.shutdown()


async def test_basemodel_output_with_a_file_field() -> None:
    runner = make_runner("model_output")
    try:
        await runner.start()
        (value,) = (await run(runner, {"text": "hola"})).outputs
        assert value["text"] == "hola" and value["length"] == 4
        assert Path(value["file"]["__cocina_file__"]).read_text() == "hola"
    finally:
        await runner.shutdown()


async def test_async_predictor_runs_concurrently_up_to_concurrency_max() -> None:
    runner = make_runner("async_predictor")
    try:
        setup = await runner.start()
        assert setup.status is SetupStatus.SUCCEEDED, setup.logs
        assert runner.is_async and runner.concurrency == 4
        results = await asyncio.gather(*(run(runner, {"delay": 0.3, "text": f"p{i}"}) for i in range(3)))
        for i, result in enumerate(results):
            assert result.done is not None and result.done.status is SUCCEEDED
            # Each concurrent prediction gets its own print()s, not its neighbours'.
            assert result.text == f"start p{i}\nend p{i}\n"
        peaks = [int(r.outputs[0].rsplit("=", 1)[1]) for r in results]
        assert max(peaks) >= 2
    finally:
        await runner.shutdown()


async def test_async_concatenate_iterator() -> None:
    runner = make_runner("async_iterator")
    try:
        await runner.start()
        result = await run(runner, {"n": 3})
        assert result.outputs == ["<0>", "<1>", "<2>"]
        assert runner.output_kind is OutputKind.CONCATENATE
    finally:
        await runner.shutdown()


@pytest.fixture
def http_file(tmp_path: Path) -> Iterator[str]:
    """A URL on 127.0.0.1 serving a small text file."""
    (tmp_path / "remote.txt").write_text("from http")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
    finally:
        server.shutdown()
        server.server_close()


async def test_path_input_from_a_local_file_and_from_a_url(tmp_path: Path, http_file: str) -> None:
    local = tmp_path / "local.txt"
    local.write_text("from disk")
    runner = make_runner("path_input")
    try:
        await runner.start()
        result = await run(runner, {"document": str(local)})
        assert result.outputs == ["local.txt:from disk"]
        result = await run(runner, {"document": http_file})
        assert result.done is not None and result.done.status is SUCCEEDED, result.done
        assert result.outputs == ["remote.txt:from http"]
    finally:
        await runner.shutdown()


async def test_logs_from_every_layer_are_captured_and_secrets_redacted() -> None:
    runner = make_runner("logs_and_secrets")
    secret = "s3cr3t-value"
    try:
        await runner.start()
        result = await run(runner, {"token": secret, "text": "hi"})
        assert result.done is not None and result.done.status is SUCCEEDED, result.text
        text = result.text
        for expected in (
            "python print hi **********",
            "python stderr **********",
            "logging module **********",
            "raw fd write **********",
            "C printf hi",
            "child process **********",
        ):
            assert expected in text
        assert secret not in text
        assert result.outputs == [f"len={len(secret)}"]
        stderr = "".join(log.data for log in result.logs if log.source == "stderr")
        assert "python stderr" in stderr and "python print" not in stderr
    finally:
        await runner.shutdown()


async def test_cog_docs_streaming_example_runs_unchanged() -> None:
    runner = make_runner("cog_docs_streaming")
    try:
        await runner.start()
        result = await run(runner)
        assert "".join(result.outputs) == "The quick brown fox jumps over the lazy dog "
    finally:
        await runner.shutdown()


async def test_cog_docs_list_of_paths_example_runs_unchanged() -> None:
    runner = make_runner("cog_docs_list_of_paths")
    try:
        await runner.start()
        (value,) = (await run(runner)).outputs
        assert [Path(v["__cocina_file__"]).read_text() for v in value] == ["foo", "bar", "baz"]
    finally:
        await runner.shutdown()
