#!/usr/bin/env bash
# Install cocina, serve the built-in demo model over HTTP, and ask it the seed's question (no network needed).
#
#   scripts/demo.sh ["another question"]
#
# Starts `cocina serve --model cocina/demo` on 127.0.0.1 (a free port, a throw-away data dir) in the background,
# waits until it is READY, sends the question as a prediction (Cog's POST /predictions, streamed), prints the
# answer as it arrives, then stops the server with SIGTERM. Environment: COCINA_DEMO_MODEL (default cocina/demo),
# COCINA_DEMO_TIMEOUT (seconds to wait for READY, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh

question=${1:-Dime un producto de limpieza que blanquee la ropa}
model=${COCINA_DEMO_MODEL:-cocina/demo}
timeout_s=${COCINA_DEMO_TIMEOUT:-300}
py=.venv/bin/python

work=$(mktemp -d)
log="$work/serve.log"
server_pid=""

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # The server drains (running predictions may finish) and exits; don't wait for ever.
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "cocina demo: $1" >&2
    if [ -s "$log" ]; then
        echo "--- last lines of the server's log ($log) ---" >&2
        tail -n 30 "$log" >&2
    fi
    exit 1
}

# A free port: bind port 0 and read what the kernel chose (a race is possible but harmless here: serve fails loudly).
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

echo "cocina demo: starting \`cocina serve --model $model\` on $url ..." >&2
.venv/bin/cocina serve --model "$model" --host 127.0.0.1 --port "$port" --data-dir "$work/data" >"$log" 2>&1 &
server_pid=$!

# Wait for READY: /health-check answers once uvicorn listens (the model is loaded before that).
"$py" - "$url" "$server_pid" "$timeout_s" <<'EOF' || fail "the server did not become READY"
import json, os, sys, time, urllib.request

url, pid, timeout_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
last = ""
while True:
    waited = time.monotonic() - start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"cocina demo: the server exited during startup (after {waited:.0f} s)")
    try:
        with urllib.request.urlopen(f"{url}/health-check", timeout=2) as r:
            status = json.load(r)["status"]
    except OSError:
        status = "loading the model"
    if status == "READY":
        print(f"\rcocina demo: server READY after {waited:.1f} s{' ' * 20}", file=sys.stderr)
        break
    if status == "SETUP_FAILED":
        sys.exit("\ncocina demo: the model's setup failed")
    if waited > timeout_s:
        sys.exit(f"\ncocina demo: still not READY after {timeout_s:.0f} s (last status: {status})")
    line = f"\rcocina demo: waiting for the server ({status}) ... {waited:.0f} s"
    if line != last:
        print(line, end="", file=sys.stderr, flush=True)
        last = line
    time.sleep(0.25)
EOF

echo "cocina demo: pregunta: $question" >&2
# The prediction, streamed (Cog's SSE): each `output` event is the next piece of the answer.
"$py" - "$url" "$question" <<'EOF' || fail "the prediction failed"
import json, sys, urllib.request

url, question = sys.argv[1], sys.argv[2]
body = json.dumps({"input": {"pregunta": question, "max_new_tokens": 128, "temperature": 0}}).encode()
request = urllib.request.Request(
    f"{url}/predictions",
    data=body,
    headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
)
event, final, started = None, None, False
with urllib.request.urlopen(request, timeout=300) as r:
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: "):])
            if event == "output":
                # The model's answer follows "Respuesta:" after a space; don't print that space.
                print(data["chunk"] if started else data["chunk"].lstrip(), end="", flush=True)
                started = True
            elif event == "completed":
                final = data
print()
if final is None or final["status"] != "succeeded":
    sys.exit(f"cocina demo: prediction {final and final['status']}: {final and final.get('error')}")
print(f"cocina demo: answered in {final['metrics'].get('predict_time', 0):.2f} s", file=sys.stderr)
EOF
