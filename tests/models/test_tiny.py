"""Tests for cocina.models.tiny: tiny random models and locally trained tokenizers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cocina.models.tiny import (
    gpt2_small_config,
    make_tiny_model,
    sample_corpus,
    tiny_config,
    train_tokenizer,
)

ARCHS = ["gpt2", "llama", "falcon", "qwen2", "mistral"]
SPANISH = "¿Dónde está el niño? Año señal acción pingüino ÁÉÍÓÚ Ññ ¡Olé!  dos  espacios\n\ttab 🍽 0.36€"


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("arch", ARCHS)
def test_arch_loads_with_auto_classes_and_generates(arch: str, tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / arch, arch=arch)  # type: ignore[arg-type]
    assert (path / "model.safetensors").is_file()
    assert (path / "config.json").is_file()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == arch
    assert tok.eos_token is not None and tok.bos_token is not None and tok.pad_token is not None
    assert len(tok) <= model.config.vocab_size
    enc = tok("¿Qué es la lejía?", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert out.shape[1] == enc["input_ids"].shape[1] + 6
    assert isinstance(tok.decode(out[0]), str)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_gqa_archs_have_fewer_kv_heads(arch: str) -> None:
    cfg = tiny_config(arch)  # type: ignore[arg-type]
    assert cfg.num_key_value_heads < cfg.num_attention_heads


def test_tokenizer_round_trips_spanish_byte_exactly(tmp_path: Path) -> None:
    tok = train_tokenizer(sample_corpus(), 600, tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for t in (tok, loaded):
        ids = t(SPANISH)["input_ids"]
        assert t.decode(ids) == SPANISH
        assert t.decode(ids).encode("utf-8") == SPANISH.encode("utf-8")
    assert loaded.eos_token == "<|endoftext|>"
    assert loaded.pad_token_id != loaded.eos_token_id


def test_tokenizer_chat_template(tmp_path: Path) -> None:
    train_tokenizer(sample_corpus(), 600, tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    text = tok.apply_chat_template(
        [{"role": "user", "content": "¿Hola?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\n¿Hola?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids("<|im_end|>") != tok.unk_token_id
    # also kept in tokenizer_config.json, so it survives packaging that ships only *.json
    (tmp_path / "tok" / "chat_template.jinja").unlink(missing_ok=True)
    assert AutoTokenizer.from_pretrained(tmp_path / "tok").chat_template == tok.chat_template


def test_tokenizer_training_is_deterministic(tmp_path: Path) -> None:
    train_tokenizer(sample_corpus(), 700, tmp_path / "a")
    train_tokenizer(sample_corpus(), 700, tmp_path / "b")
    a, b = (tmp_path / "a" / "tokenizer.json"), (tmp_path / "b" / "tokenizer.json")
    assert a.read_bytes() == b.read_bytes()


def test_model_is_deterministic_given_seed(tmp_path: Path) -> None:
    a = make_tiny_model(tmp_path / "a", arch="llama", seed=3)
    b = make_tiny_model(tmp_path / "b", arch="llama", seed=3)
    c = make_tiny_model(tmp_path / "c", arch="llama", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_dtype_is_honoured(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "bf16", arch="gpt2", dtype="bfloat16")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    assert model.dtype == torch.bfloat16


def test_gpt2_small_config_shape() -> None:
    cfg = gpt2_small_config()
    shape = (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.vocab_size, cfg.n_positions)
    assert shape == (768, 12, 12, 50257, 1024)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 123_000_000 < n < 126_000_000
