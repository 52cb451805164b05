"""The commands Cog's harness adds to testscript (harness-reference/harness.go), run against cocina.

How each `cog` command maps onto cocina (the project is the script's working directory, or the directory an image
was "built" from):

| Cog                                   | cocina                                                              |
| ------------------------------------- | ------------------------------------------------------------------- |
| `cog build [-t IMAGE]`                | `cocina schema --output FILE`: reads the config and derives the      |
|                                       | schema, as a build does; IMAGE then names this project directory     |
| `cog predict`, `cog run [IMAGE] ...`  | `cocina predict DIR ...`; `--json X` is `--input-json X --json`      |
| `cog train [IMAGE] ...`               | `cocina train DIR ...`                                               |
| `cog doctor [--fix]`                  | `cocina doctor DIR [--fix]`                                          |
| `cog serve [flags]`                   | `cocina serve DIR --host 127.0.0.1 --port P [flags]`, in background  |
| `exec docker inspect IMAGE --format   | the schema `cocina schema` derived at `cog build` (the label Cog     |
| '{{index .Config.Labels               | writes), as compact JSON with sorted keys, as Cog's label is         |
| "run.cog.openapi_schema"}}'`          |                                                                      |

`curl`, `wait-for`, `server-stop`, `webhook-server-*` and `upload-server-*` behave as in the Go harness. The mock
servers listen on 127.0.0.1 (where cocina runs) instead of 0.0.0.0 behind `host.docker.internal`; the upload server
answers each PUT with the same `Location: http://host.docker.internal:PORT/PATH` as Cog's mock, which the tests
expect to find in the outputs. Commands that need Docker or a registry fail the test: the tests using them are in
`skips.SKIPS`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conformance.script import Command, Script, go_expand, stop_process_group

__all__ = ["Harness", "cocina_command", "go_json"]

SCHEMA_LABEL_FORMAT = '{{index .Config.Labels "run.cog.openapi_schema"}}'
# Host variables the harness passes on to scripts and to `cog serve` (harness.go: propagatedEnvVars).
PROPAGATED_ENV = (
    "COG_SDK_WHEEL",
    "COGLET_WHEEL",
    "COG_CACHE_DIR",
    "COG_MODEL_REGISTRY",
    "RUST_LOG",
    "COG_CA_CERT",
    "BUILDKIT_PROGRESS",
    "COG_REGISTRY_HOST",
)
_CURL_ATTEMPTS = 10
_CURL_DELAY_S = 0.5
_CURL_TIMEOUT_S = 10.0
_SERVE_TIMEOUT_S = 120.0
_WEBHOOK_WAIT_S = 120.0


def cocina_command() -> list[str]:
    """How to run `cocina`: the console script next to this Python, else `python -m cocina.cli`."""
    script = Path(sys.executable).parent / "cocina"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "cocina.cli"]


def go_json(value: Any) -> str:
    """`value` as Go's `json.Marshal` writes it: compact, map keys sorted, `<`, `>`, `&` escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escaped)
    return text.replace("\u2029", "\\u2029")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _go_duration(text: str) -> float | None:
    """Seconds in a Go duration such as `30s`, `1m30s`, `500ms`; None when it is not one."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number, i, found = 0.0, "", 0, False
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if text.startswith(u, i)), None)
        if unit is None or not number:
            return None
        total += float(number) * units[unit]
        number, found = "", True
        i += len(unit)
    return total if found and not number else None


# --- per-test state --------------------------------------------------------------------------------------------


@dataclass
class Image:
    """What `cog build -t NAME` leaves behind: the project directory and its schema (the image's label)."""

    project: Path
    schema: dict[str, Any]


@dataclass
class _Server:
    proc: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path


@dataclass
class _Webhook:
    server: ThreadingHTTPServer
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Upload:
    server: ThreadingHTTPServer
    uploads: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _images(script: Script) -> dict[str, Image]:
    images: dict[str, Image] = script.values.setdefault("images", {})
    return images


class Harness:
    """The harness commands for one suite run; `cocina` is how to start cocina."""

    def __init__(self, cocina: list[str] | None = None, *, private_dir: Path | None = None) -> None:
        self.cocina = cocina or cocina_command()
        # Files the runner needs but the script must not see (schemas written by `cog build`).
        self.private_dir = private_dir or Path(tempfile.mkdtemp(prefix="cog-conformance-"))

    def commands(self) -> dict[str, Command]:
        docker_only = "needs Docker or a registry, which cocina does not use (see conformance/skips.py)"
        commands: dict[str, Command] = {
            "cog": self.cmd_cog,
            "curl": self.cmd_curl,
            "server-stop": self.cmd_server_stop,
            "wait-for": self.cmd_wait_for,
            "webhook-server-start": self.cmd_webhook_start,
            "webhook-server-wait": self.cmd_webhook_wait,
            "upload-server-start": self.cmd_upload_start,
            "upload-server-count": self.cmd_upload_count,
            "exec": self.cmd_exec,
        }
        for name in ("docker-run", "registry-start", "registry-inspect", "registry-seed", "docker-push", "pty-run"):
            commands[name] = _refuse(name, docker_only)
        return commands

    def setup_env(self, workdir: Path) -> dict[str, str]:
        """The environment a script starts with (testscript's, plus what the harness's Setup adds)."""
        bin_dir = str(Path(sys.executable).parent)
        env = {
            "WORK": str(workdir),
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/bin:/bin")]),
            "GOTRACEBACK": "system",
            "HOME": os.environ.get("HOME", "/no-home"),
            "TMPDIR": str(workdir / ".tmp"),
            "devnull": os.devnull,
            "/": os.sep,
            ":": os.pathsep,
            "$": "$",
            "exe": "",
            "REPO_ROOT": str(Path(__file__).resolve().parent.parent),
            "COG_NO_UPDATE_CHECK": "1",
            "COG_SKIP_DOCKER_CHECK": "1",
            "TEST_IMAGE": f"cog-test-{secrets.token_hex(5)}",
        }
        for key in PROPAGATED_ENV:
            if os.environ.get(key):
                env[key] = os.environ[key]
        return env

    # --- cog ---

    def cmd_cog(self, script: Script, neg: bool, args: list[str]) -> None:
        args = [go_expand(arg, script.getenv) for arg in args]
        if not args:
            raise script.fatal("usage: cog COMMAND [args...]")
        command, rest = args[0], args[1:]
        if command == "serve":
            self.cog_serve(script, neg, rest)
            return
        image: str | None = None
        schema_file: Path | None = None
        if command == "build":
            argv, image, schema_file = self._build_argv(script, rest)
        elif command in ("predict", "run", "train"):
            argv = self._prediction_argv(script, "train" if command == "train" else "predict", rest)
        elif command == "doctor":
            if any(arg != "--fix" for arg in rest):
                raise script.fatal(f"cog doctor {' '.join(rest)}: an option cocina doctor does not have")
            argv = [*self.cocina, "doctor", str(script.cd), *rest]
        else:
            raise script.fatal(f"cog {command}: has no cocina counterpart (it needs Docker; see conformance/skips.py)")
        try:
            out, err, code = script.exec(argv)
        except TimeoutError as exc:
            raise script.fatal(str(exc)) from None
        script.set_output(out, err)
        if code != 0:
            script.logf(f"[exit status {code}]")
        if neg:
            if code == 0:
                raise script.fatal("cog command succeeded unexpectedly")
            return
        if code != 0:
            raise script.fatal(f"cog command failed: exit status {code}")
        if schema_file is not None and image:
            _images(script)[image] = Image(script.cd, json.loads(schema_file.read_text()))

    def _build_argv(self, script: Script, args: list[str]) -> tuple[list[str], str | None, Path]:
        image = None
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("-t", "--tag") and i + 1 < len(args):
                image, i = args[i + 1], i + 2
            elif arg.startswith(("-t=", "--tag=")):
                image, i = arg.partition("=")[2], i + 1
            else:
                raise script.fatal(f"cog build {arg}: an image build option; cocina builds no image")
        schema_file = self.private_dir / f"{script.name}-{secrets.token_hex(4)}.json"
        return [*self.cocina, "schema", str(script.cd), "--output", str(schema_file)], image, schema_file

    def _prediction_argv(self, script: Script, command: str, args: list[str]) -> list[str]:
        project: Path | None = None
        flags: list[str] = []
        i = 0

        def value() -> str:
            if "=" in arg and arg.startswith("--"):
                return arg.partition("=")[2]
            if i + 1 >= len(args):
                raise script.fatal(f"cog {command}: flag {arg} needs a value")
            return args[i + 1]

        while i < len(args):
            arg = args[i]
            name = arg.partition("=")[0] if arg.startswith("--") else arg
            width = 1 if "=" in arg and arg.startswith("--") else 2
            if name in ("-i", "--input"):
                flags += ["--input", value()]
            elif name in ("-o", "--output"):
                flags += ["--output", value()]
            elif name == "--json" and command == "predict":
                flags += ["--input-json", value(), "--json"]
            elif arg.startswith("-"):
                raise script.fatal(f"cog {command} {arg}: an option cocina does not have")
            else:
                if project is not None:
                    raise script.fatal(f"cog {command}: more than one image given")
                image = _images(script).get(arg)
                if image is None:
                    raise script.fatal(f"cog {command} {arg}: no image of that name was built by this test")
                project = image.project
                width = 1
            i += width
        return [*self.cocina, command, str(project or script.cd), *flags]

    def cog_serve(self, script: Script, neg: bool, args: list[str]) -> None:
        if "server" in script.values:
            raise script.fatal("server already running")
        port = _free_port()
        out_path = self.private_dir / f"{script.name}-serve-{port}.out"
        err_path = self.private_dir / f"{script.name}-serve-{port}.err"
        argv = [*self.cocina, "serve", str(script.cd), "--host", "127.0.0.1", "--port", str(port), *args]
        # As the harness does for the container: only these variables reach the server.
        env = {k: script.getenv(k) for k in ("HOME", "PATH", "REPO_ROOT", "COG_NO_UPDATE_CHECK", "TEST_IMAGE")}
        env.update({k: script.getenv(k) for k in PROPAGATED_ENV if script.getenv(k)})
        env["TMPDIR"] = script.getenv("TMPDIR")  # the container's /tmp is its own; here it is the test's
        env = {k: v for k, v in env.items() if v}
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv, cwd=script.cd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        server = _Server(proc, port, out_path, err_path)
        script.values["server"] = server
        script.defer(lambda: _stop_server(server))
        url = f"http://127.0.0.1:{port}"
        script.setenv("SERVER_URL", url)
        healthy = _wait_for_server(url, min(_SERVE_TIMEOUT_S, script.remaining()), proc)
        stderr = err_path.read_text(errors="replace")
        script.set_output(out_path.read_text(errors="replace"), stderr)
        if not healthy:
            if neg:
                return  # the test expects setup to fail: the server stays up for /health-check
            if proc.poll() is not None:
                # The last line that says something (typer draws its errors in a box).
                lines = (line.strip(" │╭╮╰╯─\t") for line in reversed(stderr.splitlines()))
                last = next((line for line in lines if any(c.isalnum() for c in line)), "")
                raise script.fatal(f"cocina serve exited with status {proc.returncode}: {last}")
            raise script.fatal("server did not become healthy within timeout")
        if neg:
            raise script.fatal("server became healthy, but expected setup failure")

    def cmd_server_stop(self, script: Script, neg: bool, args: list[str]) -> None:
        if neg:
            raise script.fatal("server-stop: negation is not supported")
        if args:
            raise script.fatal("server-stop: usage: server-stop")
        server = script.values.pop("server", None)
        if server is not None:
            _stop_server(server)

    # --- exec: `docker inspect` of the schema label ---

    def cmd_exec(self, script: Script, neg: bool, args: list[str]) -> None:
        from conformance.script import BUILTINS

        image = _inspected_image(args)
        if image is None or image not in _images(script):
            BUILTINS["exec"](script, neg, args)
            return
        script.set_output(go_json(_images(script)[image].schema) + "\n", "")
        if neg:
            raise script.fatal("unexpected command success")

    # --- curl ---

    def cmd_curl(self, script: Script, neg: bool, args: list[str]) -> None:
        usage = "curl: usage: curl [-H key:value]... [method] [path] [body | @file]"
        headers: dict[str, str] = {}
        while len(args) >= 2 and args[0] == "-H":
            key, sep, val = args[1].partition(":")
            if not sep:
                raise script.fatal(f"curl: invalid header {args[1]!r} (expected key:value)")
            headers[key.strip()] = val.strip()
            args = args[2:]
        if len(args) < 2:
            raise script.fatal(usage)
        server_url = script.getenv("SERVER_URL")
        if not server_url:
            raise script.fatal("curl: SERVER_URL not set (did you call 'cog serve' first?)")
        method, path = args[0], args[1]
        body = b""
        if len(args) > 2:
            text = go_expand(args[2], script.getenv)
            if text.startswith("@"):
                try:
                    body = script.mkabs(text[1:]).read_bytes()
                except OSError as exc:
                    raise script.fatal(f"curl: failed to read body file {text[1:]!r}: {exc}") from None
            else:
                body = text.encode()
        if body:
            headers.setdefault("Content-Type", "application/json")
        url = urllib.parse.urlsplit(server_url)
        last_error: str | None = None
        last_status = 0
        last_body = ""
        output = script.output()
        for attempt in range(1, _CURL_ATTEMPTS + 1):
            try:
                status, text = _http(url.hostname or "127.0.0.1", url.port or 80, method, path, body, headers)
            except OSError as exc:
                last_error = str(exc) or type(exc).__name__
                time.sleep(_CURL_DELAY_S)
                continue
            last_error, last_status, last_body = None, status, text
            ok = 200 <= status < 300
            if neg and not ok:
                output.stderr.write(text)
                return
            if not neg and ok:
                output.stdout.write(text)
                return
            if attempt < _CURL_ATTEMPTS:
                time.sleep(_CURL_DELAY_S)
        if neg:
            raise script.fatal(f"curl: expected failure but got status {last_status} after {_CURL_ATTEMPTS} attempts")
        if last_error is not None:
            raise script.fatal(f"curl: all {_CURL_ATTEMPTS} attempts failed with error: {last_error}")
        script.logf(f"curl: full response body: {last_body[:4000]}")
        shown = last_body if len(last_body) <= 500 else last_body[:500] + "..."
        raise script.fatal(f"curl: all {_CURL_ATTEMPTS} attempts failed with status {last_status}: {shown}")

    # --- wait-for ---

    def cmd_wait_for(self, script: Script, neg: bool, args: list[str]) -> None:
        if len(args) < 2:
            raise script.fatal("wait-for: usage: wait-for [file|http|not-empty] <arg> [timeout]")
        condition, target = args[0], args[1]
        timeout = 30.0
        if len(args) > 2:
            parsed = _go_duration(args[-1])
            if parsed is not None:
                timeout = parsed
        if condition not in ("file", "not-empty", "http"):
            raise script.fatal(f"wait-for: unknown condition: {condition}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            met = False
            if condition in ("file", "not-empty"):
                path = Path(script.getenv("WORK")) / target
                met = path.exists() if condition == "file" else path.is_file() and path.stat().st_size > 0
            else:
                expected = 200
                if len(args) > 2 and args[2].isdigit():
                    expected = int(args[2])
                parts = urllib.parse.urlsplit(target)
                with contextlib.suppress(OSError):
                    path_q = parts.path + (f"?{parts.query}" if parts.query else "")
                    status, _ = _http(parts.hostname or "", parts.port or 80, "GET", path_q or "/", b"", {}, 2.0)
                    met = status == expected
            if met != neg:
                return
            time.sleep(0.2)
        if neg:
            raise script.fatal("wait-for: condition became true (expected to remain false)")
        raise script.fatal(f"wait-for: timeout waiting for condition: {condition} {target}")

    # --- webhook receiver ---

    def cmd_webhook_start(self, script: Script, neg: bool, args: list[str]) -> None:
        if neg:
            raise script.fatal("webhook-server-start: does not support negation")
        if "webhook" in script.values:
            raise script.fatal("webhook-server-start: server already running for this test")
        hook = _Webhook(ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler))
        hook.server.hook = hook  # type: ignore[attr-defined]
        _serve_in_thread(hook.server)
        script.values["webhook"] = hook
        script.defer(lambda: _close_server(hook.server))
        port = hook.server.server_address[1]
        script.setenv("WEBHOOK_URL", f"http://127.0.0.1:{port}/webhook")
        script.logf(f"webhook-server-start: listening on 127.0.0.1:{port}")

    def cmd_webhook_wait(self, script: Script, neg: bool, args: list[str]) -> None:
        if neg:
            raise script.fatal("webhook-server-wait: does not support negation")
        timeout = _WEBHOOK_WAIT_S
        if args:
            parsed = _go_duration(args[0])
            if parsed is not None:
                timeout = parsed
        hook: _Webhook | None = script.values.get("webhook")
        if hook is None:
            raise script.fatal("webhook-server-wait: no webhook server running (call webhook-server-start first)")
        if not hook.done.wait(min(timeout, script.remaining())):
            raise script.fatal(
                f"webhook-server-wait: timed out after {args[0] if args else '2m0s'} waiting for terminal webhook"
            )
        with hook.lock:
            result = dict(hook.result or {})
        script.output().stdout.write(_webhook_summary(result) + "\n")

    # --- upload receiver ---

    def cmd_upload_start(self, script: Script, neg: bool, args: list[str]) -> None:
        if neg:
            raise script.fatal("upload-server-start: does not support negation")
        if "upload" in script.values:
            raise script.fatal("upload-server-start: server already running for this test")
        upload = _Upload(ThreadingHTTPServer(("127.0.0.1", 0), _UploadHandler))
        upload.server.upload = upload  # type: ignore[attr-defined]
        _serve_in_thread(upload.server)
        script.values["upload"] = upload
        script.defer(lambda: _close_server(upload.server))
        port = upload.server.server_address[1]
        script.setenv("UPLOAD_SERVER_URL", f"http://127.0.0.1:{port}/")
        script.logf(f"upload-server-start: listening on 127.0.0.1:{port}")

    def cmd_upload_count(self, script: Script, neg: bool, args: list[str]) -> None:
        if len(args) != 1:
            raise script.fatal("upload-server-count: usage: upload-server-count N")
        try:
            expected = int(args[0])
        except ValueError:
            raise script.fatal(f"upload-server-count: invalid count {args[0]!r}") from None
        upload: _Upload | None = script.values.get("upload")
        if upload is None:
            raise script.fatal("upload-server-count: no upload server running (call upload-server-start first)")
        with upload.lock:
            got = len(upload.uploads)
        if neg and got == expected:
            raise script.fatal(f"upload-server-count: expected NOT {expected} uploads but got {got}")
        if not neg and got != expected:
            raise script.fatal(f"upload-server-count: expected {expected} uploads but got {got}")


# --- helpers ---------------------------------------------------------------------------------------------------


def _refuse(name: str, why: str) -> Command:
    def command(script: Script, neg: bool, args: list[str]) -> None:
        raise script.fatal(f"{name}: {why}")

    return command


def _inspected_image(args: list[str]) -> str | None:
    """The image of `docker inspect IMAGE --format '<the schema label>'`, else None."""
    if (
        len(args) == 5
        and args[:2] == ["docker", "inspect"]
        and args[3] == "--format"
        and (args[4] == SCHEMA_LABEL_FORMAT)
    ):
        return args[2]
    if len(args) == 4 and args[:2] == ["docker", "inspect"] and args[3] == f"--format={SCHEMA_LABEL_FORMAT}":
        return args[2]
    return None


def _http(
    host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float = _CURL_TIMEOUT_S
) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _wait_for_server(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    """Poll /health-check until READY, UNHEALTHY or BUSY (True) or SETUP_FAILED/DEFUNCT (False), as the harness."""
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # the server exited: it cannot become healthy
        try:
            status, body = _http(parts.hostname or "", parts.port or 80, "GET", "/health-check", b"", {}, 5.0)
        except OSError:
            time.sleep(0.2)
            continue
        if status == 200:
            with contextlib.suppress(ValueError, AttributeError):
                health = json.loads(body).get("status")
                if health in ("READY", "UNHEALTHY", "BUSY"):
                    return True
                if health in ("SETUP_FAILED", "DEFUNCT"):
                    return False
        time.sleep(0.2)
    return False


def _stop_server(server: _Server) -> None:
    """As the harness: POST /shutdown, give the process 5 s, then kill its process group."""
    with contextlib.suppress(OSError):
        _http("127.0.0.1", server.port, "POST", "/shutdown", b"", {"Content-Type": "application/json"}, 5.0)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout=5.0)
    stop_process_group(server.proc, grace_s=2.0)


def _serve_in_thread(server: ThreadingHTTPServer) -> None:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="conformance-mock-server", daemon=True).start()


def _close_server(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, with Content-Length or chunked transfer encoding (as Go's server reads it)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size_line = handler.rfile.readline().split(b";", 1)[0].strip()
            size = int(size_line or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        for key, val in (headers or {}).items():
            self.send_header(key, val)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _WebhookHandler(_QuietHandler):
    """Cog's webhook receiver: records the first terminal callback (status, output size, error, metrics)."""

    def do_POST(self) -> None:
        hook: _Webhook = self.server.hook  # type: ignore[attr-defined]
        try:
            payload = json.loads(_read_body(self))
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            self._reply(400, "bad json\n")
            return
        self._reply(200)
        status = payload.get("status")
        if status not in ("succeeded", "failed", "canceled"):
            return
        output = payload.get("output")
        # Go measures a string output by its length in bytes, anything else by its JSON text.
        if isinstance(output, str):
            size = len(output.encode())
        else:
            size = (
                len(json.dumps(output, separators=(",", ":"), ensure_ascii=False).encode())
                if "output" in payload
                else 0
            )
        error = payload.get("error")
        result: dict[str, Any] = {
            "status": status,
            "output_size": size,
            "has_error": isinstance(error, str) and error != "",
        }
        if isinstance(error, str) and error:
            result["error_message"] = error
        if "metrics" in payload:
            result["metrics"] = payload["metrics"]
        with hook.lock:
            if hook.result is None:
                hook.result = result
                hook.done.set()

    def do_GET(self) -> None:
        self._reply(405, "method not allowed\n")

    do_PUT = do_GET


def _webhook_summary(result: dict[str, Any]) -> str:
    """The JSON line `webhook-server-wait` prints (Go's struct field order, `omitempty` fields left out)."""
    ordered: dict[str, Any] = {
        "status": result.get("status", ""),
        "output_size": result.get("output_size", 0),
        "has_error": result.get("has_error", False),
    }
    if result.get("error_message"):
        ordered["error_message"] = result["error_message"]
    if "metrics" in result:
        ordered["metrics"] = result["metrics"]
    body = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)
    # The top level keeps Go's field order; nested maps (metrics) are sorted, as Go writes them.
    if "metrics" in ordered:
        body = body[: body.rindex(',"metrics":')] + ',"metrics":' + go_json(ordered["metrics"]) + "}"
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        body = body.replace(char, escaped)
    return body


class _UploadHandler(_QuietHandler):
    """Cog's mock upload server: records each PUT and answers with a Location without query parameters."""

    def do_PUT(self) -> None:
        upload: _Upload = self.server.upload  # type: ignore[attr-defined]
        body = _read_body(self)
        path = urllib.parse.urlsplit(self.path).path
        with upload.lock:
            upload.uploads.append((path, self.headers.get("Content-Type", ""), len(body)))
        self._reply(200, headers={"Location": f"http://host.docker.internal:{upload.server.server_port}{path}"})

    def do_GET(self) -> None:
        self._reply(405, "method not allowed\n")

    do_POST = do_GET
