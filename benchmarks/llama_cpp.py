"""llama.cpp as a baseline for benchmarks/engine.py and benchmarks/serving.py: its own binaries, our weights.

Nothing of llama.cpp is kept in this repository. Its sources come from the ``llama-cpp-python`` sdist on the
package registry (``vendor/llama.cpp``), fetched with pip and built with CMake into a cache folder outside the
repository (``~/.cache/cocina/llama.cpp``, or ``$COCINA_LLAMA_CPP_DIR``) the first time a benchmark needs it
(about 5 minutes on 2 cores; the benchmark says so when it builds). Its ``convert_hf_to_gguf.py`` converts the
benchmark's Hugging Face model directory to GGUF, and ``llama-quantize`` makes the Q8_0 and Q4_0 files.

    .venv/bin/python benchmarks/llama_cpp.py build      # build (or find) the binaries, print where they are
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

SDIST_VERSION = "0.3.36"  # llama-cpp-python, whose sdist carries vendor/llama.cpp
TARGETS = ("llama-bench", "llama-server", "llama-quantize")


def cache_root() -> Path:
    """Where the sources, the build and the converted models live (outside the repository)."""
    env = os.environ.get("COCINA_LLAMA_CPP_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cocina" / "llama.cpp"


def _log(msg: str) -> None:
    print(f"[llama.cpp] {msg}", file=sys.stderr, flush=True)


def source_dir() -> Path:
    """vendor/llama.cpp of the sdist, downloaded and unpacked once."""
    root = cache_root()
    src = root / f"llama_cpp_python-{SDIST_VERSION}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").exists():
        return src
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
    if not archive.exists():
        _log(f"downloading the llama-cpp-python=={SDIST_VERSION} sdist (its vendor/llama.cpp) with pip")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", f"llama-cpp-python=={SDIST_VERSION}", "-d", str(root)],
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return src


def binaries(*, build: bool = True) -> dict[str, Path]:
    """Paths of llama-bench, llama-server and llama-quantize; built when missing (and ``build``)."""
    bin_dir = cache_root() / "build" / "bin"
    found = {name: bin_dir / name for name in TARGETS}
    if all(p.exists() for p in found.values()):
        return found
    if not build:
        raise FileNotFoundError(f"llama.cpp binaries missing in {bin_dir}")
    src = source_dir()
    build_dir = cache_root() / "build"
    _log(f"llama.cpp binaries missing in {bin_dir}: building them from {src} (about 5 minutes on 2 cores)")
    for cmd in (
        ["cmake", "-S", str(src), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=ON",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=ON",
         "-DBUILD_SHARED_LIBS=OFF"],
        ["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(os.cpu_count() or 2),
         "--target", *TARGETS],
    ):
        # The compiler's warnings run to megabytes: keep them out of the benchmark's output unless it fails.
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building llama.cpp failed: {' '.join(cmd[:3])}: {proc.stderr[-3000:]}")
    return found


_CONVERT = """
import sys
sys.path.insert(0, sys.argv.pop(1))
import convert_hf_to_gguf as c
from conversion import base
# A tokenizer trained here has no entry in llama.cpp's table of known pre-tokenizers; it is GPT-2's byte-level one.
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
c.main()
"""


def convert(model_dir: Path, outtype: str) -> Path:
    """``model_dir`` (a Hugging Face GPT-2 directory) as a GGUF file of ``outtype`` (BF16, F32, Q8_0, Q4_0).

    F32/BF16 come from llama.cpp's converter; Q8_0 and Q4_0 from ``llama-quantize --pure`` of the F32 file,
    so every tensor (the tied output/embedding table too, as in cocina's int8 and int4) has that one type.
    """
    out_dir = cache_root() / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{model_dir.name}-{hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:8]}"
    out = out_dir / f"{stem}-{outtype}.gguf"
    if out.exists() and out.stat().st_mtime >= (model_dir / "config.json").stat().st_mtime:
        return out
    if outtype.upper() in ("Q8_0", "Q4_0"):
        f32 = convert(model_dir, "F32")
        quantize = binaries()["llama-quantize"]
        subprocess.run([str(quantize), "--pure", str(f32), str(out), outtype.upper()], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return out
    src = source_dir()
    # The converter wants the context length under GPT-2's old name too.
    staged = out_dir / f"{stem}-hf"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(model_dir, staged)
    cfg = json.loads((staged / "config.json").read_text())
    cfg.setdefault("n_ctx", cfg.get("n_positions", 1024))
    (staged / "config.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src / "gguf-py"), str(src)])}
    subprocess.run(
        [sys.executable, "-c", _CONVERT, str(src), str(staged), "--outtype", outtype.lower(), "--outfile", str(out)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    shutil.rmtree(staged, ignore_errors=True)
    return out


def gguf_weight_bytes(gguf: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the tensors in a GGUF file, leaving out those whose name contains one of ``skip``."""
    sys.path.insert(0, str(source_dir() / "gguf-py"))
    try:
        from gguf import GGUFReader  # the sdist's own gguf-py
    finally:
        sys.path.pop(0)
    reader = GGUFReader(str(gguf))
    return sum(int(t.n_bytes) for t in reader.tensors if not any(k in t.name for k in skip))


def bench(gguf: Path, threads: int, n_prompt: int = 512, n_gen: int = 128, reps: int = 3) -> dict[str, Any]:
    """``llama-bench`` pp and tg on one GGUF file: {"pp512": tok/s, "tg128": tok/s, ...}.

    Each figure is its best repetition (``..._mean`` is llama-bench's own average): on a shared machine the
    best run is the least disturbed one, and cocina's figures next to it are taken the same way.
    """
    exe = binaries()["llama-bench"]
    proc = subprocess.run(
        [str(exe), "-m", str(gguf), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen), "-r", str(reps),
         "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    out: dict[str, Any] = {"command": f"llama-bench -m {gguf.name} -t {threads} -p {n_prompt} -n {n_gen} -r {reps}"}
    for row in json.loads(proc.stdout):
        key = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        out[key] = max(row.get("samples_ts") or [row["avg_ts"]])
        out[key + "_mean"] = row["avg_ts"]
        out[key + "_stddev"] = row["stddev_ts"]
        out.setdefault("cpu_info", row.get("cpu_info"))
        out.setdefault("build_commit", row.get("build_commit"))
        out.setdefault("model_type", row.get("model_type"))
    return out


def server_command(gguf: Path, port: int, threads: int, parallel: int, ctx_per_slot: int = 256) -> list[str]:
    """``llama-server`` with ``parallel`` slots (continuous batching on), ``ctx_per_slot`` tokens each."""
    exe = binaries()["llama-server"]
    return [
        str(exe), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
        "-np", str(parallel), "-c", str(parallel * ctx_per_slot), "--cont-batching", "--no-webui",
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        for name, path in binaries().items():
            print(name, path)
    else:
        print(__doc__)
