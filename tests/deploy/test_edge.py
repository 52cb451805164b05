"""`cocina build --target edge`: the bundle installs and answers inside a network namespace with no network
(`unshare -n`: only a loopback, no DNS); the GGUF export reads back and computes what the model computes; and a
build missing what it needs fails clearly before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from cocina.deploy.build import Target, build
from cocina.deploy.edge import EdgeOptions
from cocina.deploy.source import BuildError, BuildSource, project_source
from tests.deploy.conftest import ECHO


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
def test_the_bundle_installs_and_answers_with_no_network(echo_source: BuildSource, tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test runs the bundle in a network namespace: it needs root and unshare (util-linux)")
    out = tmp_path / "bundle"
    result = build(Target.EDGE, echo_source, out)
    assert (out / "run.sh").stat().st_mode & 0o111 and (out / "README.md").is_file()
    lock = (out / "requirements.lock").read_text().splitlines()
    assert lock[0].startswith("cocina==") and any(line.startswith("torch==") for line in lock)
    assert len(list((out / "wheels").glob("*.whl"))) == len(lock)
    script = (
        "ip link set lo up; "
        "if getent hosts pypi.org >/dev/null; then echo NETWORK; exit 3; fi; "
        f"(PORT=5931 ./run.sh > {tmp_path}/run.log 2>&1 &); "
        "for i in $(seq 1 900); do curl -sf localhost:5931/health >/dev/null && break; sleep 0.2; done; "
        "curl -sf -X POST localhost:5931/predictions -H 'Content-Type: application/json' "
        '-d \'{"input": {"text": "sin red ", "n": 2}}\'; '
        "curl -s -X POST localhost:5931/shutdown >/dev/null; sleep 1"
    )
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", script], cwd=out, capture_output=True, text=True, timeout=300, check=False
    )
    first_answer_s = time.monotonic() - started
    log = (tmp_path / "run.log").read_text() if (tmp_path / "run.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log[-3000:]}"
    answer = json.loads(done.stdout)
    assert answer["status"] == "succeeded" and answer["output"] == ["sin red 0", "sin red 1"]
    assert first_answer_s < 120, first_answer_s  # install (once) + start + answer; measured in docs/deploy.md
    print(f"edge bundle: {result.size_bytes / 2**20:.0f} MiB, first answer after {first_answer_s:.1f} s")


def test_gguf_export_computes_what_the_model_computes(tmp_path: Path) -> None:
    """A GPT-2 forward pass in numpy on the GGUF's tensors, read the way llama.cpp reads them ([out, in] rows,
    the fused q|k|v layout, the tied output), against transformers on the same weights."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from cocina.demo import demo_model_dir
    from cocina.deploy.gguf_export import write_gguf

    directory = Path(demo_model_dir())
    ids = [5, 17, 301, 42, 7, 99]
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(directory).eval()(torch.tensor([ids])).logits[0].numpy()
    for quant, tolerance in (("f16", 0.02), ("q8_0", 0.08)):
        path = tmp_path / f"demo-{quant}.gguf"
        write_gguf(directory, path, quant)
        reader = gguf.GGUFReader(path)
        assert reader.fields["general.architecture"].contents() == "gpt2"
        assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
        assert "Pregunta" in reader.fields["tokenizer.chat_template"].contents()
        assert len(reader.fields["tokenizer.ggml.merges"].contents()) > 1000
        t = {
            x.name: gguf.quants.dequantize(x.data, x.tensor_type).reshape([int(d) for d in reversed(x.shape)])
            for x in reader.tensors
        }
        kinds = {x.name: x.tensor_type.name for x in reader.tensors}
        assert kinds["blk.0.ffn_up.weight"] == quant.upper() and kinds["blk.0.ffn_up.bias"] == "F32"
        got = _gpt2_forward(t, ids, reader)
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() / scale < tolerance, (quant, np.abs(got - expected).max(), scale)
        assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.8


def _gpt2_forward(t: dict[str, np.ndarray], ids: list[int], reader: object) -> np.ndarray:
    fields = reader.fields  # type: ignore[attr-defined]
    heads = int(fields["gpt2.attention.head_count"].contents())
    eps = float(fields["gpt2.attention.layer_norm_epsilon"].contents())
    layers = int(fields["gpt2.block_count"].contents())

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * t[f"{name}.weight"] + t[f"{name}.bias"]

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]  # ggml: weight rows are outputs

    n = len(ids)
    x = t["token_embd.weight"][ids] + t["position_embd.weight"][:n]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(layers):
        h = norm(x, f"blk.{i}.attn_norm")
        q, k, v = np.split(linear(h, f"blk.{i}.attn_qkv"), 3, axis=-1)
        d = q.shape[-1] // heads
        q, k, v = (a.reshape(n, heads, d).transpose(1, 0, 2) for a in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(d) + mask
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        attn = (weights @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = x + linear(attn, f"blk.{i}.attn_output")
        h = norm(x, f"blk.{i}.ffn_norm")
        up = linear(h, f"blk.{i}.ffn_up")
        gelu = 0.5 * up * (1 + np.tanh(np.sqrt(2 / np.pi) * (up + 0.044715 * up**3)))
        x = x + linear(gelu, f"blk.{i}.ffn_down")
    return norm(x, "output_norm") @ t["output.weight"].T


def test_the_edge_bundle_exports_gguf_and_a_modelfile(tmp_path: Path) -> None:
    from cocina.deploy.edge import EdgeOptions

    project = tmp_path / "demo"
    project.mkdir()
    (project / "cocina.yaml").write_text('predict: "cocina.llm:LLMPredictor"\n')
    source = project_source(project, name="acme/demo")
    from cocina.deploy.gguf_export import export_gguf

    written = export_gguf(source, tmp_path / "gguf", ("q8_0", "f16"))
    assert [p.name for p in written] == ["demo-Q8_0.gguf", "demo-F16.gguf"]
    modelfile = (tmp_path / "gguf" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./demo-Q8_0.gguf") and 'PARAMETER stop "<|endoftext|>"' in modelfile
    assert written[0].stat().st_size < written[1].stat().st_size  # 8 bits a weight against 16
    assert EdgeOptions(gguf=("q8_0",)).gguf == ("q8_0",)


# ---- a build missing what it needs: a clear error, and nothing written


def test_no_project_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not a project"):
        project_source(tmp_path)


def test_a_language_model_whose_weights_are_not_here_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "chat"
    project.mkdir()
    (project / "cocina.yaml").write_text('predict: "cocina.llm:LLMPredictor"\ncocina:\n  model: acme/not-downloaded\n')
    with pytest.raises(BuildError, match="no model: acme/not-downloaded is not a directory"):
        project_source(project)


def test_a_requirement_with_no_wheel_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    shutil.copytree(ECHO, project)
    sdist_dir = tmp_path / "pkg" / "nowheel-1.0"
    (sdist_dir / "nowheel").mkdir(parents=True)
    (sdist_dir / "nowheel" / "__init__.py").write_text("")
    (sdist_dir / "pyproject.toml").write_text('[project]\nname = "nowheel"\nversion = "1.0"\n')
    with tarfile.open(project / "nowheel-1.0.tar.gz", "w:gz") as tar:
        tar.add(sdist_dir, arcname="nowheel-1.0")
    (project / "requirements.txt").write_text("./nowheel-1.0.tar.gz\n")
    (project / "cog.yaml").write_text(
        (ECHO / "cog.yaml").read_text() + "build:\n  python_requirements: requirements.txt\n"
    )
    source = project_source(project, name="acme/echo")
    out = tmp_path / "out" / "edge"
    started = time.monotonic()
    with pytest.raises(BuildError, match=r"requirement ./nowheel-1.0.tar.gz has no wheel for the bundle"):
        build(Target.EDGE, source, out, edge=EdgeOptions())
    assert time.monotonic() - started < 5  # refused up front, not after collecting every wheel
    assert not out.exists() and not (tmp_path / "out").exists()


def test_a_missing_requirements_file_and_a_busy_out_are_refused(tmp_path: Path, echo_source: BuildSource) -> None:
    project = tmp_path / "proj"
    shutil.copytree(ECHO, project)
    (project / "cog.yaml").write_text((ECHO / "cog.yaml").read_text() + "build:\n  python_requirements: reqs.txt\n")
    with pytest.raises(BuildError, match=r"build\.python_requirements: file 'reqs\.txt' not found"):
        project_source(project)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(BuildError, match="exists and is not empty"):
        build(Target.CLOUD, echo_source, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"] and not _leftovers(tmp_path)


def test_the_cli_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    import sys

    run = [sys.executable, "-m", "cocina.cli", "build"]
    bad_target = subprocess.run([*run, str(ECHO), "--target", "mainframe"], capture_output=True, text=True, check=False)
    assert bad_target.returncode == 2 and "choose edge, onprem or cloud" in bad_target.stderr
    missing = subprocess.run(
        [*run, str(tmp_path / "nothing"), "--target", "edge", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "not a project" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "o").exists()
    ok = subprocess.run(
        [*run, str(ECHO), "--target", "cloud", "--out", str(tmp_path / "c"), "--name", "acme/echo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and "cloud:" in ok.stdout and (tmp_path / "c" / "k8s" / "deployment.yaml").is_file()
