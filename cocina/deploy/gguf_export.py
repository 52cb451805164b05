"""The edge bundle's GGUF export: a Hugging Face causal LM written with the `gguf` package for llama.cpp and Ollama.

Q8_0 (matrices quantized in blocks of 32 with one scale each) and F16; norms and biases stay F32, as llama.cpp's
own converter writes them. The tokenizer (byte-level BPE: tokens, types, merges), its special tokens and the chat
template go in the file, so `llama-server -m model.gguf` needs nothing else. Supported: GPT-2, Llama/Mistral and
Qwen2 layouts. What the converter changes, and why:
- GPT-2's attention and MLP matrices are HF `Conv1D` ([in, out]): transposed to ggml's [out, in]. Its output
  matrix is tied to the token embedding: written again as `output`, which llama.cpp's GPT-2 graph reads.
- Llama's q/k projections are permuted: HF rotates halves of each head, ggml's RoPE rotates adjacent pairs.
- `tokenizer.ggml.pre` must be a name llama.cpp knows (an unknown one makes it refuse the file): `gpt-2` for
  byte-level GPT-2-style tokenizers, `qwen2`, `llama-bpe`.

Also written: an Ollama `Modelfile` (FROM the Q8_0 file, a TEMPLATE for cocina's chat format, the stop token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cocina.deploy.source import BuildError, BuildSource

_ARCHES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
_PRE = {"gpt2": "gpt-2", "llama": "llama-bpe", "qwen2": "qwen2"}


def _model_dir(source: BuildSource) -> Path:
    if not source.language_model:
        raise BuildError("--gguf: the project is not a language model on cocina's engine (nothing to export)")
    if source.model_dir is not None:
        return source.model_dir
    from cocina.demo import demo_model_dir

    return Path(demo_model_dir())


def check_exportable(source: BuildSource, quants: tuple[str, ...]) -> None:
    """Before anything is written: the model is one of the layouts the export knows, with a tokenizer.json."""
    directory = _model_dir(source)
    config = json.loads((directory / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in _ARCHES:
        raise BuildError(f"--gguf: {model_type!r} models cannot be exported yet (GPT-2, Llama, Mistral, Qwen2 can)")
    if not (directory / "tokenizer.json").is_file():
        raise BuildError(f"--gguf: {directory} has no tokenizer.json (a fast tokenizer is needed)")
    bad = [q for q in quants if q not in ("q8_0", "f16")]
    if bad:
        raise BuildError(f"--gguf {bad[0]}: choose q8_0 or f16")


def _load_weights(directory: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise BuildError(f"--gguf: {directory} has no .safetensors weights")
    weights: dict[str, Any] = {}
    for file in files:
        try:
            weights.update(load_file(file))
        except TypeError:  # bf16 has no numpy dtype: go through torch
            import torch
            from safetensors.torch import load_file as load_torch

            weights.update({k: v.to(torch.float32).numpy() for k, v in load_torch(file).items()})
    return weights


def _permute(w: Any, heads: int) -> Any:
    """HF's rotate-half q/k rows -> ggml's interleaved pairs."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(arch: str, config: dict[str, Any], weights: dict[str, Any]) -> list[tuple[str, Any]]:
    import gguf
    import numpy as np

    n_layers = config.get("n_layer") or config["num_hidden_layers"]
    name_map = gguf.get_tensor_name_map(
        gguf.MODEL_ARCH.GPT2 if arch == "gpt2" else gguf.MODEL_ARCH.QWEN2 if arch == "qwen2" else gguf.MODEL_ARCH.LLAMA,
        n_layers,
    )
    out: list[tuple[str, Any]] = []
    for hf_name, value in weights.items():
        if hf_name.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")):
            continue  # GPT-2's causal mask buffers; RoPE's frequencies are recomputed from the config
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise BuildError(f"--gguf: no GGUF name for tensor {hf_name}")
        w = np.asarray(value, dtype=np.float32)
        if arch == "gpt2" and hf_name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            w = w.T.copy()
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            w = _permute(w, config["num_attention_heads"])
        if arch == "llama" and hf_name.endswith("k_proj.weight"):
            w = _permute(w, config.get("num_key_value_heads") or config["num_attention_heads"])
        out.append((name, w))
    names = {n for n, _ in out}
    if "output.weight" not in names:
        embedding = next(w for n, w in out if n == "token_embd.weight")
        out.append(("output.weight", embedding))  # tied embeddings: llama.cpp reads an output matrix
    return out


def _tokenizer(writer: Any, directory: Path, arch: str, vocab_size: int) -> None:
    import gguf

    spec = json.loads((directory / "tokenizer.json").read_text())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise BuildError("--gguf: only BPE tokenizers can be exported")
    vocab: dict[str, int] = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    vocab.update(special)
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for text, idx in vocab.items():
        if idx < vocab_size:
            tokens[idx] = text
            types[idx] = gguf.TokenType.CONTROL if text in special else gguf.TokenType.NORMAL
    writer.add_tokenizer_model("gpt2")  # byte-level BPE, whatever the architecture
    writer.add_tokenizer_pre(_PRE[arch])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/pad ids and the chat template, from tokenizer.json and tokenizer_config.json.
    gguf.SpecialVocab(directory, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)
    template = directory / "chat_template.jinja"
    config_file = directory / "tokenizer_config.json"
    has_template = config_file.is_file() and "chat_template" in json.loads(config_file.read_text())
    if template.is_file() and not has_template:
        writer.add_chat_template(template.read_text())


def write_gguf(directory: Path, path: Path, quant: str) -> None:
    """One GGUF file of the model in `directory`, quantized `q8_0` or `f16`."""
    import gguf
    import numpy as np

    config = json.loads((directory / "config.json").read_text())
    arch = _ARCHES[config["model_type"]]
    weights = _load_weights(directory)
    tensors = _tensors(arch, config, weights)
    vocab_size = int(config["vocab_size"])
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(directory.name)
    if arch == "gpt2":
        n_embd = int(config["n_embd"])
        writer.add_context_length(int(config["n_positions"]))
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(int(config.get("n_inner") or 4 * n_embd))
        writer.add_block_count(int(config["n_layer"]))
        writer.add_head_count(int(config["n_head"]))
        writer.add_layer_norm_eps(float(config["layer_norm_epsilon"]))
    else:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(hidden)
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(int(config["num_hidden_layers"]))
        writer.add_head_count(heads)
        writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
        writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
        writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
        writer.add_rope_dimension_count(int(config.get("head_dim") or hidden // heads))
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _tokenizer(writer, directory, arch, vocab_size)
    for name, w in tensors:
        if w.ndim == 1:
            writer.add_tensor(name, w.astype(np.float32))  # norms and biases: F32
        elif quant == "q8_0" and w.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, w.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def modelfile(gguf_name: str, directory: Path) -> str:
    """Ollama's Modelfile: the first GGUF file and the stop token; for cocina's own chat format (the demo model's
    `Pregunta:` / `Respuesta:`) a Go TEMPLATE that reproduces it. Other models' templates travel in the GGUF
    (`tokenizer.chat_template`), from which Ollama derives its own."""
    eos = "<|endoftext|>"
    template = ""
    config_file = directory / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        eos = str(config.get("eos_token") or eos)
        template = str(config.get("chat_template") or "")
    if not template and (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text()
    lines = [f"FROM ./{gguf_name}"]
    if "Pregunta: " in template and "Respuesta:" in template:
        lines.append(
            'TEMPLATE """{{ range .Messages }}{{ if eq .Role "user" }}Pregunta: {{ .Content }}\n'
            '{{ else if eq .Role "assistant" }}Respuesta: {{ .Content }}' + eos + '{{ end }}{{ end }}Respuesta:"""'
        )
    lines.append(f'PARAMETER stop "{eos}"')
    return "\n".join(lines) + "\n"


def export_gguf(source: BuildSource, out: Path, quants: tuple[str, ...]) -> list[Path]:
    directory = _model_dir(source)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for quant in quants:
        path = out / f"{source.slug}-{quant.upper()}.gguf"
        write_gguf(directory, path, quant)
        written.append(path)
    first = written[0].name
    (out / "Modelfile").write_text(modelfile(first, directory))
    return written
