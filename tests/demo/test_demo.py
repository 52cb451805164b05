"""Tests for the built-in demo model (cocina.demo) and its training script."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cocina.demo import (
    DEMO_MODEL_ID,
    DEMO_PROMPT_FORMAT,
    demo_corpus_dir,
    demo_model_dir,
    format_prompt,
)

REPO = Path(__file__).resolve().parents[2]
SEED_PROMPT = "Dime un producto de limpieza que blanquee la ropa"
WORD = re.compile(r"[a-záéíóúüñA-ZÁÉÍÓÚÜÑ]+")


def _load_script() -> ModuleType:
    path = REPO / "scripts" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_demo_model", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[object, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = demo_model_dir()
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _answer(model: object, tok: object, question: str, max_new_tokens: int = 60) -> str:
    import torch

    enc = tok(format_prompt(question), return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)  # type: ignore[attr-defined]
    new = out[0, enc["input_ids"].shape[1] :]
    return str(tok.decode(new, skip_special_tokens=True)).strip()  # type: ignore[attr-defined]


def _corpus_words() -> set[str]:
    words: set[str] = set()
    for path in demo_corpus_dir().glob("*.txt"):
        words.update(w.lower() for w in WORD.findall(path.read_text(encoding="utf-8")))
    return words


def test_ids_and_prompt_format() -> None:
    assert DEMO_MODEL_ID == "cocina/demo"
    assert format_prompt("  ¿Qué es\nCog? ") == "Pregunta: ¿Qué es Cog?\nRespuesta:"
    assert DEMO_PROMPT_FORMAT.format(pregunta="x") == format_prompt("x")


def test_files_present_and_small() -> None:
    path = demo_model_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "training.json"):
        assert (path / name).is_file(), name
    total = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    assert total <= 20 * 1024 * 1024, f"demo model is {total / 1e6:.1f} MB"
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gpt2"


def test_loads_and_answers_offline() -> None:
    """Load and generate in a fresh interpreter with the hub switched off."""
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from cocina.demo import demo_model_dir, format_prompt\n"
        "p = demo_model_dir()\n"
        "tok = AutoTokenizer.from_pretrained(p); m = AutoModelForCausalLM.from_pretrained(p)\n"
        f"enc = tok(format_prompt({SEED_PROMPT!r}), return_tensors='pt')\n"
        "out = m.generate(**enc, max_new_tokens=20, do_sample=False)\n"
        "print(tok.decode(out[0, enc['input_ids'].shape[1]:], skip_special_tokens=True))\n"
    )
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    env = {**os.environ, **offline}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_seed_prompt_gets_readable_spanish(model_and_tokenizer: tuple[object, object]) -> None:
    model, tok = model_and_tokenizer
    text = _answer(model, tok, SEED_PROMPT)
    assert text, "empty answer"
    assert all(c.isprintable() or c in "\n" for c in text), repr(text)
    words = [w.lower() for w in WORD.findall(text)]
    assert len(words) >= 5, text
    known = _corpus_words()
    share = sum(w in known for w in words) / len(words)
    assert share >= 0.8, (share, text)
    assert "lejía" in text.lower(), text


@pytest.mark.parametrize("question", ["¿Qué es Replicate?", "¿Qué es Cog?", "¿Qué es un despliegue?"])
def test_other_questions_answer_in_spanish(model_and_tokenizer: tuple[object, object], question: str) -> None:
    model, tok = model_and_tokenizer
    text = _answer(model, tok, question)
    words = [w.lower() for w in WORD.findall(text)]
    assert len(words) >= 3, text
    known = _corpus_words()
    assert sum(w in known for w in words) / len(words) >= 0.7, text


def test_chat_template_matches_prompt_format(model_and_tokenizer: tuple[object, object]) -> None:
    _, tok = model_and_tokenizer
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": SEED_PROMPT}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
    assert text == format_prompt(SEED_PROMPT)


def test_tokenizer_is_reproducible_from_the_committed_corpus(
    model_and_tokenizer: tuple[object, object],
) -> None:
    script = _load_script()
    from cocina.models.tiny import train_tokenizer

    _, tok = model_and_tokenizer
    paragraphs, examples = script.load_corpus(demo_corpus_dir())
    record = json.loads((demo_model_dir() / "training.json").read_text(encoding="utf-8"))
    again = train_tokenizer([*paragraphs, *examples], record["settings"]["vocab_size"])
    assert again.get_vocab() == tok.get_vocab()  # type: ignore[attr-defined]


def test_training_script_smoke(tmp_path: Path) -> None:
    script = _load_script()
    settings = script.Settings(steps=2, batch_size=2, seq_len=32, warmup=1, n_layer=1, n_embd=64, n_head=2)
    record = script.train(settings, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert record["settings"]["steps"] == 2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    AutoTokenizer.from_pretrained(tmp_path / "out")
