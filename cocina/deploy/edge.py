"""`cocina build --target edge`: a bundle that installs and answers on a machine with no network at all.

    run.sh              the launcher: first run installs into ./.venv from ./wheels (pip --no-index, the machine's
                        pip configuration ignored), then `cocina serve app` on 127.0.0.1 (HOST, PORT to change)
    wheels/             every wheel cocina and the project need, for this interpreter and platform (binary only:
                        no compiler needed); requirements.lock pins them
    app/                the project; `app/model/` the language model's weights when they are not cocina's demo
    gguf/               with --gguf: the language model as GGUF (Q8_0 and F16) for llama.cpp, and an Ollama Modelfile
    README.md

A language model is served int8 on CPU (`--quantize int8`: the engine quantizes its linear layers at load, the
fastest CPU path at batch 1 and the smallest in memory). Nothing reaches a network at run time: HF_HUB_OFFLINE
and TRANSFORMERS_OFFLINE are set and pip sees only the wheelhouse.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cocina.deploy.source import BuildError, BuildSource

_NO_WHEEL = re.compile(
    r"No matching distribution found for (?P<req>.+)"
    r"|Could not find a version that satisfies the requirement (?P<req2>\S+)"
)


@dataclass(frozen=True)
class EdgeOptions:
    port: int = 5000
    quantize: str | None = "int8"  # for a language model on CPU; None keeps the model's dtype
    gguf: tuple[str, ...] = ()  # "q8_0", "f16"
    pip_cache_dir: Path | None = None


def _installed_pins() -> list[str]:
    """`name==version` of every distribution in this environment: the wheelhouse takes the versions cocina was
    installed and tested with, rather than whatever is newest today."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() == "cocina":
            continue
        version = dist.version.split("+", 1)[0]  # torch's local `+cpu` tag: the constraint names the release
        pins[name.lower()] = f"{name}=={version}"
    return sorted(pins.values())


def platform_tag() -> str:
    return f"CPython {sys.version_info.major}.{sys.version_info.minor}, {platform.system()} {platform.machine()}"


def check_requirements(source: BuildSource) -> None:
    """Before anything is written: a requirement that is a local file or directory must be a wheel (pip would
    copy a source distribution into the bundle, which then cannot install without a compiler)."""
    for line in source.requirements:
        target = line.split(" @ ", 1)[1].strip() if " @ " in line else line
        target = target.removeprefix("file://")
        if not target.startswith((".", "/", "~")):
            continue  # a name from the index: `--only-binary` makes pip refuse one without a wheel
        path = (source.project / Path(target).expanduser()).resolve()
        if not path.exists():
            raise BuildError(f"requirement {line}: {path} does not exist")
        if path.is_dir() or not path.name.endswith(".whl"):
            raise BuildError(
                f"requirement {line} has no wheel for the bundle: {path.name} is a source distribution or a "
                "directory, and an edge bundle installs with no compiler and no network (build a wheel with "
                "`pip wheel` and name the .whl instead)"
            )


def download_wheels(source: BuildSource, cocina_wheel: Path, wheels: Path, work: Path, cache_dir: Path | None) -> None:
    """Every wheel the bundle needs into `wheels` (with cocina's own); `BuildError` naming a requirement that has
    no wheel for this platform (a bundle must install without a compiler or a network)."""
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(_installed_pins()) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--dest",
        str(wheels),
        "-c",
        str(constraints),
        str(cocina_wheel),
        *source.requirements,
    ]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=source.project, check=False)
    if done.returncode != 0:
        text = done.stderr + done.stdout
        found = _NO_WHEEL.search(text)
        if found:
            req = (found.group("req") or found.group("req2") or "").strip()
            raise BuildError(
                f"requirement {req} has no wheel for {platform_tag()}: an edge bundle installs with no compiler and "
                "no network, so every requirement needs a binary wheel (pin a version that has one, or build one "
                "with `pip wheel` and put it on an index)"
            )
        if "only-binary" in text or "Binary-only" in text:
            raise BuildError(
                f"a requirement is a source distribution, not a wheel, for {platform_tag()}: {text.strip()[-600:]}"
            )
        raise BuildError(f"collecting the bundle's wheels failed:\n{text.strip()[-1500:]}")
    stray = sorted(p.name for p in wheels.iterdir() if not p.name.endswith(".whl"))
    if stray:
        raise BuildError(f"the bundle would carry source distributions, not wheels: {', '.join(stray)}")


def lock_lines(wheels: Path) -> list[str]:
    """`name==version` for each wheel in the wheelhouse (cocina's first)."""
    lines = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        lines.append(f"{name.replace('_', '-')}=={version}")
    return sorted(lines, key=lambda line: (not line.startswith("cocina=="), line.lower()))


def run_script(source: BuildSource, opts: EdgeOptions) -> str:
    serve = [
        f"{source.name}=app",
        "--host",
        '"${HOST:-127.0.0.1}"',
        "--port",
        f'"${{PORT:-{opts.port}}}"',
        "--data-dir",
        '"$here/data"',
    ]
    if source.language_model and opts.quantize:
        serve += ["--quantize", opts.quantize, "--device", "cpu"]
    model_line = 'export COCINA_MODEL="$here/app/model"\n' if source.model_dir is not None else ""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"""#!/usr/bin/env bash
# {source.name} (version {source.version[:12]}), served by cocina with no network: ./run.sh [cocina serve options]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# Nothing may reach a network: no model hub, and pip sees only the wheelhouse (never this machine's pip config).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME="$here/.cache/huggingface"
export COCINA_CACHE_DIR="$here/.cache"
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
{model_line}python="${{PYTHON:-python3}}"
if [ ! -x .venv/bin/cocina ]; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != ({py.replace(".", ", ")}))'; then
        echo "run.sh: this bundle's wheels are for Python {py}; set PYTHON to a python{py}" >&2
        exit 1
    fi
    echo "run.sh: installing from ./wheels (once) ..." >&2
    "$python" -m venv .venv
    # --no-compile: byte-compiling torch and transformers would double the install time; Python compiles
    # what it imports, on first use. --no-deps: requirements.lock lists every package already.
    .venv/bin/python -m pip install --quiet --no-index --no-compile --no-deps --find-links wheels -r requirements.lock
fi
exec .venv/bin/cocina serve {" ".join(serve)} "$@"
"""


def readme(source: BuildSource, opts: EdgeOptions, lock: list[str]) -> str:
    kind = "a language model" if source.language_model else "a Cog predictor"
    gguf = ""
    if opts.gguf:
        gguf = f"""
## llama.cpp and Ollama

`gguf/` has the model as GGUF ({", ".join(q.upper() for q in opts.gguf)}), with its tokenizer and chat template:

    llama-server -m gguf/{source.slug}-{opts.gguf[0].upper()}.gguf --port 8080
    ollama create {source.slug} -f gguf/Modelfile && ollama run {source.slug}
"""
    quant = " int8 on CPU" if source.language_model and opts.quantize else ""
    return f"""# {source.name} at the edge

{kind} served by cocina{quant}, with everything it needs in this directory: no network is used, not even to
install. Made by `cocina build --target edge` for version `{source.version[:12]}`.

    ./run.sh                       # first run installs into ./.venv from ./wheels, then serves on 127.0.0.1:{opts.port}
    PORT=8000 ./run.sh             # another port; HOST=0.0.0.0 to serve the local network
    curl -s localhost:{opts.port}/health

The wheels are for {platform_tag()} ({len(lock)} packages, pinned in requirements.lock); run.sh refuses another
Python. The APIs are cocina's: Cog (`POST /predictions`), Replicate v1 (`/v1/predictions`) and, for a language
model, OpenAI's (`/v1/chat/completions`). Predictions are kept in `./data`.
{gguf}"""
