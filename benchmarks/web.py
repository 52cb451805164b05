"""Web page benchmark (issue #11): what a model page weighs and how soon it is interactive, and how soon the first
token of a streamed answer shows, in headless Chromium against a real `cocina serve` on 127.0.0.1.

The server is the real command (`cocina serve` in a subprocess, with an API token, so pages are behind the
sign-in form): the echo predictor, the kitchen-sink form, a media maker, the built-in demo language model (a
small GPT-2 trained on the seed's questions, on cocina's engine), and a model pushed twice with `cocina push`
(two versions to compare); its data directory holds an index `kb` of three short documents (`cocina index
create`), which the playground offers for the demo model's answers (the sources screenshot). The browser is Debian's
chromium
driven by Playwright (`executable_path`: nothing downloaded).

1. **Transfer and interactive** per page: a fresh browser context each run (nothing cached, signed in), the
   page's Navigation Timing (`domInteractive`, `domContentLoadedEventEnd`: module scripts have run) and the
   `transferSize` of the document and every resource it loads (gzip where the browser asks). No outputs are on
   the page. Targets: <= 150 KB, < 500 ms.
2. **First token visible before completion**: the demo language model answers 64 tokens from the Playground; the
   page records when the first token was put on the page and when the prediction was done.

    .venv/bin/python benchmarks/web.py                       # writes docs/benchmarks.md's section
    .venv/bin/python benchmarks/web.py --screenshots docs/img # and the screenshots of docs/web.md
    .venv/bin/python benchmarks/web.py --quick --no-docs

Prints one JSON object with every figure and the issue's targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTION = "## Web pages (benchmarks/web.py)"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "cocina-web-bench"
TOKEN = "bench-token"
TARGET_TRANSFER_BYTES = 150 * 1024
TARGET_INTERACTIVE_MS = 500.0
PAGES = ("/", "/acme/echo", "/acme/kitchen", "/cocina/demo", "/acme/notes")

NOTES = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="A note to keep"){extra}) -> str:
        return text.upper()
"""

NOTES_README = """# Notes

Keeps a note, in capitals. Version 2 adds `copies`.

| input | what |
| --- | --- |
| `text` | the note |
"""


# The index the playground offers (docs/rag.md): its sources are the `sources` screenshot.
RAG_DOCS = {
    "lavanderia.md": "# Lavandería\n\n## Blanquear\n\nLa lejía blanquea la ropa blanca: un tapón en cinco litros de "
    "agua fría.\n\n## Manchas\n\nEl vino tinto se quita con sal y agua con gas.\n",
    "cocina.md": "# Cocina\n\nEl vinagre blanco limpia la grasa del horno y desincrusta la cal del grifo.\n",
    "jardin.txt": "Los tomates necesitan seis horas de sol al día y riego temprano por la mañana.\n",
}


def measure_page(browser: Any, base_url: str, path: str, storage_state: Any = None) -> dict[str, float]:
    """One visit in a fresh context (an empty cache): bytes transferred and Navigation Timing, in ms."""
    context = browser.new_context(base_url=base_url, storage_state=storage_state)
    try:
        page = context.new_page()
        page.goto(path, wait_until="load")
        timing = page.evaluate(
            """() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const resources = performance.getEntriesByType('resource');
              return {
                document_bytes: nav.transferSize,
                resource_bytes: resources.reduce((n, r) => n + r.transferSize, 0),
                resources: resources.length,
                interactive_ms: nav.domInteractive - nav.startTime,
                scripts_ran_ms: nav.domContentLoadedEventEnd - nav.startTime,
                load_ms: nav.loadEventEnd - nav.startTime,
              };
            }"""
        )
    finally:
        context.close()
    timing["transfer_bytes"] = timing["document_bytes"] + timing["resource_bytes"]
    return {k: float(v) for k, v in timing.items()}


def first_token(browser: Any, base_url: str, storage_state: Any, runs: int) -> dict[str, Any]:
    """The demo language model answers from the Playground: when its first token is on the page, and when the
    prediction is done (ms from the click)."""
    context = browser.new_context(base_url=base_url, storage_state=storage_state)
    page = context.new_page()
    page.goto("/cocina/demo")
    firsts, dones, chars_at_first = [], [], []
    for i in range(runs):
        page.fill("#in-prompt", "Dime un producto de limpieza que blanquee la ropa")
        page.fill("#in-max_new_tokens", "64")
        page.fill("#in-seed", str(i))
        page.evaluate(
            """() => {
              window.firstChars = null;
              new MutationObserver((_, obs) => {
                const n = document.querySelector('#output').textContent.length;
                if (n > 0 && window.firstChars === null) { window.firstChars = n; obs.disconnect(); }
              }).observe(document.querySelector('#output'), {childList: true, subtree: true, characterData: true});
            }"""
        )
        page.click("#run")
        page.wait_for_selector("#status.status-succeeded", timeout=60_000)
        card = page.locator("#output-card")
        firsts.append(int(card.get_attribute("data-first-output-ms") or 0))
        dones.append(int(card.get_attribute("data-done-ms") or 0))
        chars_at_first.append(page.evaluate("window.firstChars"))
        final_chars = len(page.inner_text("#output"))
    context.close()
    return {
        "runs": runs,
        "tokens": 64,
        "first_token_ms_p50": statistics.median(firsts),
        "done_ms_p50": statistics.median(dones),
        "first_before_done": all(f < d for f, d in zip(firsts, dones, strict=True)),
        "chars_at_first_token_p50": statistics.median(chars_at_first),
        "chars_final_last_run": final_chars,
    }


def shrink_png(path: Path) -> None:
    """A screenshot in 256 colours (no dithering: the pages' colours are flat), zlib at its best, when that is
    smaller (Pillow; about 40% of Chromium's PNG)."""
    import io

    from PIL import Image

    raw = path.read_bytes()
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    buf = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buf, format="PNG", optimize=True
    )
    if len(buf.getvalue()) < len(raw):
        path.write_bytes(buf.getvalue())


def screenshots(browser: Any, base_url: str, storage_state: Any, out: Path) -> list[str]:
    """The pages docs/web.md shows (PNG, 1100 px wide, 256 colours, 10-60 KiB each)."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[str] = []

    def shot(page: Any, name: str, full: bool = False) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        path = out / f"web-{name}.png"
        page.screenshot(path=str(path), full_page=full)
        shrink_png(path)
        made.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))

    anonymous = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 560})
    page = anonymous.new_page()
    page.goto("/acme/echo")
    shot(page, "signin")
    anonymous.close()

    context = browser.new_context(
        base_url=base_url, storage_state=storage_state, viewport={"width": 1100, "height": 760}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto("/")
    shot(page, "index")
    page.goto("/cocina/demo")
    page.fill("#in-prompt", "Dime un producto de limpieza que blanquee la ropa")
    page.fill("#in-max_new_tokens", "64")
    page.fill("#in-seed", "7")
    page.click("#run")
    page.wait_for_selector("#status.status-succeeded", timeout=60_000)
    shot(page, "playground")
    playground_url = page.url
    page.goto("/cocina/demo")
    page.select_option("#rag-index", "kb")
    page.fill("#rag-top-k", "2")
    page.fill("#in-prompt", "¿Qué producto blanquea la ropa?")
    page.fill("#in-max_new_tokens", "32")
    page.fill("#in-seed", "7")
    page.click("#run")
    page.wait_for_selector("#status.status-succeeded", timeout=60_000)
    page.locator("#sources-list .source summary").first.click()
    page.locator("#output-card").scroll_into_view_if_needed()
    path = out / "web-sources.png"
    page.locator("#output-card").screenshot(path=str(path))
    shrink_png(path)
    made.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    page.goto(playground_url)
    page.wait_for_selector("#status.status-succeeded", timeout=60_000)
    page.click("#example-add")
    page.click("#share-open")
    page.click("#share-create")
    page.wait_for_function("() => document.querySelector('#share-url').value.includes('/p/')")
    link = page.input_value("#share-url")
    shot(page, "share-create")
    page.click("#tab-api")
    page.click('#langs [data-lang="openai"]')
    shot(page, "api")
    page.click("#tab-history")
    page.wait_for_selector("#history tr")
    shot(page, "history")
    page.goto("/cocina/demo#examples")
    page.wait_for_selector("#examples .example")
    shot(page, "examples")
    page.goto("/acme/kitchen")
    shot(page, "form", full=True)
    page.goto("/acme/notes#versions")
    page.click("#diff-form button")
    page.wait_for_selector("#diff li")
    shot(page, "versions")
    page.goto("/acme/notes#readme")
    shot(page, "readme")
    page.goto("/acme/media")
    page.select_option("#in-kind", "image")
    page.click("#run")
    page.wait_for_selector("#output img")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    shot(page, "dark")
    context.close()

    stranger = browser.new_context(viewport={"width": 1100, "height": 620})
    page = stranger.new_page()
    page.goto(link)
    shot(page, "shared")
    stranger.close()
    return made


def _push_notes(url: str, workdir: Path, env: dict[str, str]) -> list[str]:
    from benchmarks.serving import cocina_cmd

    versions = []
    for tag, extra in (("v1", ""), ("v2", ', copies: int = Input(description="How many", default=1, ge=1)')):
        root = workdir / f"notes-{tag}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
        (root / "predict.py").write_text(textwrap.dedent(NOTES.replace("{extra}", extra)))
        (root / "README.md").write_text(NOTES_README)
        proc = subprocess.run(
            [*cocina_cmd(), "push", f"{url}/acme/notes", "--dir", str(root), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"cocina push failed: {proc.stderr[-2000:]}")
        versions.append(json.loads(proc.stdout)["id"])
    return versions


def cpu_flags() -> str:
    """The CPU's vector flags that matter here (from /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "n/a"
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return " ".join(f for f in wanted if f in flags) or "none of avx2/avx512"


def _f(x: Any, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    ft = report["first_token"]
    lines = [
        SECTION,
        "",
        f"Run {report['date']} on {m['cpu']} ({m['cores']} cores; flags: {report.get('cpu_flags', 'n/a')}), "
        f"code {report['code']}; {report['browser']}; load before: "
        f"{report['uptime_before'].rpartition('load average:')[2].strip()}. One `cocina serve` on 127.0.0.1 with an "
        "API token (pages behind the sign-in form), each page visited in a fresh browser context (empty cache, "
        f"signed in), {report['runs']} visits a page.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| page | transfer (HTML + CSS + JS, gzip) | domInteractive p50 / max | scripts ran (DCL end) p50 / max |",
        "| --- | --- | --- | --- |",
    ]
    for path, figures in report["pages"].items():
        lines.append(
            f"| `{path}` | {figures['transfer_bytes'] / 1024:.1f} KiB ({int(figures['resources'])} files) | "
            f"{_f(figures['interactive_ms_p50'])} / {_f(figures['interactive_ms_max'])} ms | "
            f"{_f(figures['scripts_ran_ms_p50'])} / {_f(figures['scripts_ran_ms_max'])} ms |"
        )
    lines += [
        "",
        "First token of a streamed answer (the demo model, a 4-layer GPT-2 on cocina's engine, fp32, "
        f"max_new_tokens {ft['tokens']}, "
        f"{ft['runs']} runs from the Playground): first token on the page at **{_f(ft['first_token_ms_p50'], 0)} ms**, "
        f"the prediction done at {_f(ft['done_ms_p50'], 0)} ms (p50, from the click; the page then had "
        f"{_f(ft['chars_at_first_token_p50'], 0)} characters of the final {ft['chars_final_last_run']}).",
        "",
        "| target (issue #11) | measured | met |",
        "| --- | --- | --- |",
    ]
    for key, v in report["targets"].items():
        lines.append(f"| {key} {v['target']} | {_f(v['value'])} | {'yes' if v['pass'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _replace_section(section: str) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start == -1:
        docs.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = text.find("\n## ", start + len(SECTION))
    rest = text[end + 1 :] if end != -1 else ""
    docs.write_text(text[:start] + section + ("\n" + rest if rest else ""), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    from benchmarks.serving import Server, _code_version, _machine, _uptime, cocina_cmd, free_port, running

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--runs", type=int, default=10, help="visits of each page, and answers for the first token")
    p.add_argument("--quick", action="store_true", help="2 visits and 2 answers (the smoke test)")
    p.add_argument("--screenshots", type=Path, help="write the pages' screenshots here (docs/img)")
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 2
    chromium = shutil.which("chromium")
    if chromium is None:
        print("benchmarks/web.py: no chromium (run scripts/install-browser.sh)", file=sys.stderr)
        return 2
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    projects = {
        "acme/echo": ROOT / "tests" / "server" / "fixtures" / "projects" / "echo",
        "acme/kitchen": ROOT / "tests" / "web" / "fixtures" / "projects" / "kitchen",
        "acme/media": ROOT / "tests" / "web" / "fixtures" / "projects" / "media",
    }
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "code": _code_version(),
        "command": "python benchmarks/web.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "uptime_before": _uptime(),
        "cpu_flags": cpu_flags(),
        "runs": args.runs,
    }
    port = free_port()
    env = {**os.environ, "COCINA_API_TOKEN": TOKEN, "COCINA_HOME": str(workdir / "home")}
    docs = workdir / "rag-docs"
    shutil.rmtree(docs, ignore_errors=True)
    docs.mkdir()
    for name, text in RAG_DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    subprocess.run(
        [*cocina_cmd(), "index", "create", "kb", str(docs), "--data-dir", str(data)],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    engine = ["--device", "cpu", "--dtype", "float32", "--kv-cache", "64M"]
    cmd = [
        *cocina_cmd(),
        "serve",
        *(f"{name}={path}" for name, path in projects.items()),
        "--model",
        "cocina/demo",
        "--warm",
        "acme/echo",
        "--warm",
        "cocina/demo",
        *engine,
        "--data-dir",
        str(data),
        "--port",
        str(port),
    ]
    server = Server("cocina", cmd, env=env, cwd=workdir, log=workdir / "server.log", port=port, health="/health")
    with running(server, 180) as srv, sync_playwright() as pw:
        report["versions"] = _push_notes(srv.url, workdir, env)
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        report["browser"] = f"Chromium {browser.version} (Debian package, headless)"
        signin = browser.new_context(base_url=srv.url)
        page = signin.new_page()
        page.goto("/acme/echo")
        page.fill("#key", TOKEN)
        page.press("#key", "Enter")
        page.wait_for_url("**/acme/echo")
        state = signin.storage_state()
        signin.close()
        for path in PAGES:  # a first visit each: the server's own first-request costs are not the page's
            measure_page(browser, srv.url, path, state)
        report["pages"] = {}
        for path in PAGES:
            runs = [measure_page(browser, srv.url, path, state) for _ in range(args.runs)]
            report["pages"][path] = {
                "transfer_bytes": max(r["transfer_bytes"] for r in runs),
                "resources": runs[0]["resources"],
                "interactive_ms_p50": statistics.median(r["interactive_ms"] for r in runs),
                "interactive_ms_max": max(r["interactive_ms"] for r in runs),
                "scripts_ran_ms_p50": statistics.median(r["scripts_ran_ms"] for r in runs),
                "scripts_ran_ms_max": max(r["scripts_ran_ms"] for r in runs),
            }
        report["first_token"] = first_token(browser, srv.url, state, args.runs)
        if args.screenshots:
            report["screenshots"] = screenshots(browser, srv.url, state, args.screenshots)
        browser.close()
    report["uptime_after"] = _uptime()
    heaviest = max(v["transfer_bytes"] for v in report["pages"].values())
    slowest = max(v["interactive_ms_p50"] for v in report["pages"].values())
    report["targets"] = {
        "model page transfer, KiB": {
            "target": f"<= {TARGET_TRANSFER_BYTES // 1024}",
            "value": heaviest / 1024,
            "pass": heaviest <= TARGET_TRANSFER_BYTES,
        },
        "interactive (domInteractive p50), ms": {
            "target": f"< {TARGET_INTERACTIVE_MS:.0f}",
            "value": slowest,
            "pass": slowest < TARGET_INTERACTIVE_MS,
        },
        "first token before completion, ms (p50)": {
            "target": f"< done ({report['first_token']['done_ms_p50']:.0f})",
            "value": report["first_token"]["first_token_ms_p50"],
            "pass": report["first_token"]["first_before_done"],
        },
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    if not args.no_docs:
        _replace_section(render(report))
        print("docs/benchmarks.md updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
