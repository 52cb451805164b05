"""The harness commands (Cog's `curl`, webhook and upload receivers, `wait-for`) and the `cog` -> `cocina`
translation, without running cocina."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conformance import harness as harness_module
from conformance.harness import Harness, _go_duration, _inspected_image, _webhook_summary, go_json
from conformance.script import Script, ScriptFailure
from conformance.skips import EXCLUSIVE, SKIPS
from conformance.suite import conditions, default_suite_dir, discover


def _script(tmp_path: Path, harness: Harness) -> Script:
    env = harness.setup_env(tmp_path)
    return Script("t", tmp_path, env, harness.commands(), condition=conditions(False))


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(["cocina"], private_dir=tmp_path / "private")


def test_go_json_is_compact_sorted_and_html_escaped() -> None:
    assert (
        go_json({"b": 1, "a": {"z": [1, "<&>"], "y": None}}) == '{"a":{"y":null,"z":[1,"\\u003c\\u0026\\u003e"]},"b":1}'
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("1.5s", 1.5)]
)
def test_go_durations(text: str, seconds: float) -> None:
    assert _go_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "s", "1x", "3s5"])
def test_not_go_durations(text: str) -> None:
    assert _go_duration(text) is None


def test_only_the_schema_label_of_an_image_is_inspected() -> None:
    label = '{{index .Config.Labels "run.cog.openapi_schema"}}'
    assert _inspected_image(["docker", "inspect", "img", "--format", label]) == "img"
    assert _inspected_image(["docker", "inspect", "img", f"--format={label}"]) == "img"
    assert (
        _inspected_image(["docker", "inspect", "img", "--format", '{{index .Config.Labels "run.cog.version"}}']) is None
    )
    assert _inspected_image(["docker", "images"]) is None


def test_cog_commands_become_cocina_commands(tmp_path: Path, harness: Harness) -> None:
    script = _script(tmp_path, harness)
    harness_module._images(script)["img"] = harness_module.Image(Path("/built/project"), {})
    argv = harness._prediction_argv(script, "predict", ["img", "-i", "s=1", "--json", "@in.json", "-o", "out.txt"])
    assert argv == [
        "cocina",
        "predict",
        "/built/project",
        "--input",
        "s=1",
        "--input-json",
        "@in.json",
        "--json",
        "--output",
        "out.txt",
    ]
    assert harness._prediction_argv(script, "train", ["-i", "n=1"]) == [
        "cocina",
        "train",
        str(tmp_path),
        "--input",
        "n=1",
    ]
    with pytest.raises(ScriptFailure, match="no image of that name"):
        harness._prediction_argv(script, "predict", ["never-built"])
    with pytest.raises(ScriptFailure, match="an option cocina does not have"):
        harness._prediction_argv(script, "predict", ["--gpus", "all"])
    build, image, schema_file = harness._build_argv(script, ["-t", "name"])
    assert build == ["cocina", "schema", str(tmp_path), "--output", str(schema_file)] and image == "name"
    with pytest.raises(ScriptFailure, match="an image build option"):
        harness._build_argv(script, ["--use-cog-base-image"])


def test_docker_inspect_prints_the_schema_cog_build_recorded(tmp_path: Path, harness: Harness) -> None:
    script = _script(tmp_path, harness)
    harness_module._images(script)["img"] = harness_module.Image(tmp_path, {"openapi": "3.0.2", "b": {"y": 1, "x": 2}})
    script.run(
        "exec docker inspect img --format '{{index .Config.Labels \"run.cog.openapi_schema\"}}'\n"
        'stdout \'^\\{"b":\\{"x":2,"y":1\\},"openapi":"3.0.2"\\}$\'\n'
    )


def test_cog_subcommands_without_a_cocina_counterpart_fail(tmp_path: Path, harness: Harness) -> None:
    with pytest.raises(ScriptFailure, match="cog exec: has no cocina counterpart"):
        _script(tmp_path, harness).run("cog exec echo hi\n")
    with pytest.raises(ScriptFailure, match="registry-start: needs Docker"):
        _script(tmp_path, harness).run("registry-start\n")


class _Answers(BaseHTTPRequestHandler):
    """GET /ok -> 200 "fine"; GET /missing -> 404 "nope"; POST echoes the JSON body and two headers."""

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b"fine") if self.path == "/ok" else self._send(404, b"nope")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(
            200,
            json.dumps(
                {"body": json.loads(body), "type": self.headers["Content-Type"], "prefer": self.headers.get("Prefer")}
            ).encode(),
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_curl_succeeds_on_2xx_and_negated_on_errors(
    tmp_path: Path, harness: Harness, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness_module, "_CURL_DELAY_S", 0.01)
    (tmp_path / "body.json").write_text('{"from":"file"}')
    script = _script(tmp_path, harness)
    script.setenv("SERVER_URL", server)
    script.setenv("NAME", "ana")
    script.run(
        "curl GET /ok\n"
        "stdout '^fine$'\n"
        "! curl GET /missing\n"
        "stderr '^nope$'\n"
        "! stdout .\n"
        'curl -H Prefer:respond-async POST /echo \'{"name":"$NAME"}\'\n'  # the body is expanded by curl itself
        'stdout \'"body": \\{"name": "ana"\\}\'\n'
        'stdout \'"type": "application/json"\'\n'
        'stdout \'"prefer": "respond-async"\'\n'
        "curl POST /echo @body.json\n"
        "stdout 'from'\n"
    )
    with pytest.raises(ScriptFailure, match="all 10 attempts failed with status 404: nope"):
        _script_with_server(tmp_path, harness, server).run("curl GET /missing\n")
    with pytest.raises(ScriptFailure, match="expected failure but got status 200"):
        _script_with_server(tmp_path, harness, server).run("! curl GET /ok\n")
    with pytest.raises(ScriptFailure, match="SERVER_URL not set"):
        _script(tmp_path, harness).run("curl GET /ok\n")


def _script_with_server(tmp_path: Path, harness: Harness, server: str) -> Script:
    script = _script(tmp_path, harness)
    script.setenv("SERVER_URL", server)
    return script


def _post(
    url: str, body: bytes, method: str = "POST", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(method, "/" + parts[3] if len(parts) > 3 else "/", body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, dict(response.getheaders())


def test_webhook_receiver_reports_the_first_terminal_callback(tmp_path: Path, harness: Harness) -> None:
    script = _script(tmp_path, harness)
    script.execute("webhook-server-start\n")
    url = script.getenv("WEBHOOK_URL")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/webhook")
    assert _post(url, b"not json")[0] == 400
    assert _post(url, json.dumps({"status": "processing", "output": "x"}).encode())[0] == 200  # not terminal
    final = {"status": "failed", "output": "héllo", "error": "boom", "metrics": {"z": 1, "predict_time": 0.5}}
    assert _post(url, json.dumps(final).encode())[0] == 200
    assert _post(url, json.dumps({"status": "succeeded", "output": "later"}).encode())[0] == 200  # not the first
    script.execute("webhook-server-wait 5s\n")
    assert script.stdout == (
        '{"status":"failed","output_size":6,"has_error":true,"error_message":"boom",'
        '"metrics":{"predict_time":0.5,"z":1}}\n'
    )
    script.close()


def test_webhook_summary_measures_non_string_outputs_by_their_json() -> None:
    summary = _webhook_summary({"status": "succeeded", "output_size": 7, "has_error": False})
    assert summary == '{"status":"succeeded","output_size":7,"has_error":false}'


def test_webhook_wait_times_out(tmp_path: Path, harness: Harness) -> None:
    script = _script(tmp_path, harness)
    with pytest.raises(ScriptFailure, match="timed out after 100ms waiting for terminal webhook"):
        script.run("webhook-server-start\nwebhook-server-wait 100ms\n")


def test_upload_receiver_counts_puts_and_answers_with_a_clean_location(tmp_path: Path, harness: Harness) -> None:
    script = _script(tmp_path, harness)
    script.execute("upload-server-start\nupload-server-count 0\n")
    url = script.getenv("UPLOAD_SERVER_URL")
    status, headers = _post(
        url + "out.png?signature=abc", b"\x89PNG", method="PUT", headers={"Content-Type": "image/png"}
    )
    port = url.rstrip("/").rsplit(":", 1)[1]
    assert status == 200 and headers["Location"] == f"http://host.docker.internal:{port}/out.png"
    chunked = {"Transfer-Encoding": "chunked"}
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    conn.request("PUT", "/big.bin", body=iter([b"a" * 10, b"b" * 5]), headers=chunked, encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert _post(url + "x", b"", method="POST")[0] == 405
    script.execute("upload-server-count 2\n! upload-server-count 3\n")
    assert [(p, size) for p, _, size in script.values["upload"].uploads] == [("/out.png", 4), ("/big.bin", 15)]
    with pytest.raises(ScriptFailure, match="expected 5 uploads but got 2"):
        script.run("upload-server-count 5\n")
    with pytest.raises(OSError):  # the test is over: its servers are gone
        _post(url + "late", b"", method="PUT")


def test_wait_for_files(tmp_path: Path, harness: Harness) -> None:
    (tmp_path / "there.txt").write_text("x")
    (tmp_path / "empty.txt").write_text("")
    _script(tmp_path, harness).run(
        "wait-for file there.txt 1s\nwait-for not-empty there.txt 1s\n! wait-for file gone 300ms\n"
    )
    with pytest.raises(ScriptFailure, match=r"timeout waiting for condition: not-empty empty\.txt"):
        _script(tmp_path, harness).run("wait-for not-empty empty.txt 300ms\n")


SUITE = default_suite_dir()


@pytest.mark.skipif(SUITE is None, reason="Cog's suite (../shared/conformance/cog/tests) is not there")
def test_every_skip_and_exclusive_test_exists_in_the_suite() -> None:
    assert SUITE is not None
    names = {path.stem for path in discover(SUITE)}
    assert set(SKIPS) <= names, set(SKIPS) - names
    assert set(EXCLUSIVE) <= names
    assert not set(SKIPS) & set(EXCLUSIVE)
    for name, reason in SKIPS.items():
        assert len(reason) > 40, name  # a reason, not a label
