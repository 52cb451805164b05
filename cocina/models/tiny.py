"""Tiny random-weight causal LMs and locally trained tokenizers, for tests and benchmarks.

No model hub is reachable from cocina's machines, so every model used in tests is built here from a
``transformers`` config with random weights, next to a byte-level BPE tokenizer trained in about a second
with the ``tokenizers`` library. Everything is saved with ``save_pretrained`` so that
``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)`` load it like a
model from the hub.

Typical use::

    from cocina.models.tiny import make_tiny_model
    path = make_tiny_model(tmp_path / "llama", arch="llama")   # GQA: 4 heads, 2 key/value heads

Outputs are deterministic for a given ``seed`` (weights) and corpus/vocabulary size (tokenizer).

The GPT-2-small shape (:func:`gpt2_small_config`, 124M parameters, vocabulary 50257) is provided for
benchmarks. Its tokenizer is a small locally trained one (a few thousand tokens), so ids above
``len(tokenizer)`` exist in the model's vocabulary but are never produced by encoding; decoding such ids
(a random model may sample them) yields no text. Count throughput in token ids, not decoded characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "Arch",
    "falcon_rw_1b_config",
    "gpt2_small_config",
    "make_model_from_config",
    "make_tiny_model",
    "sample_corpus",
    "save_tokenizer",
    "tiny_config",
    "train_tokenizer",
]

Arch = Literal["gpt2", "llama", "falcon", "qwen2", "mistral"]

#: GPT-2 style: one token marks both the start and the end of a document.
EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
#: ChatML markers, added as special tokens so a chat template can be emulated.
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

#: A ChatML-like jinja chat template (the form Qwen and many hub models use).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_BUILTIN_PARAGRAPHS: tuple[str, ...] = (
    "Hoy vamos a hablar sobre el despliegue de modelos de lenguaje: qué significa desplegar un modelo, "
    "por qué es importante y cómo llevarlo de desarrollo a producción de forma eficiente.",
    "¿Qué es un despliegue? Es el proceso de llevar un modelo desde un entorno de desarrollo a un entorno "
    "de producción, donde puede ser utilizado por usuarios reales a través de una API.",
    "La lejía blanquea la ropa y desinfecta las superficies; el vinagre limpia los cristales y el "
    "bicarbonato quita las manchas. ¡Nunca mezcles lejía con amoníaco!",
    "En la nube pagas por uso; en tu propia cocina (on-premise) tienes el control total; en el borde "
    "(edge) la latencia es muy baja. Año, niño, señal, corazón, acción, pingüino, ¿cuánto cuesta?",
    "Replicate ejecuta modelos de inteligencia artificial en la nube con una llamada a una API. Cog "
    "empaqueta un predictor (predict.py y cog.yaml) en una imagen de Docker.",
    "Con cocina ejecutas predictores de Cog y sirves modelos de lenguaje en tu propio hardware, sin "
    "depender de conexión a internet: la receta es tuya.",
    "Large language models are trained on large amounts of text to predict the next token. Serving them "
    "efficiently needs continuous batching, a paged key/value cache and careful scheduling.",
    "The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 $0.36/h.",
    "def predict(self, prompt: str, max_new_tokens: int = 128) -> str:\n    return self.model(prompt)\n",
    'Symbols and JSON: {"input": {"pregunta": "Dime un producto de limpieza"}} [a, b] (x + y) * z = 42; '
    "a <= b != c -> d # comentario @ usuario & 50% ~ ^ | \\ / ' ` \" ?",
    "Français: élève, où, garçon. Deutsch: Größe, Übung. Português: ação, coração. Emoji: 🍽 🥪 👨‍🍳.",
    "Costo por request: 0.03€ * (1500 / 1000) = 0.045€. Un millón de solicitudes al mes: 2500€.",
)


def sample_corpus(*, include_repo_docs: bool = False, extra: Iterable[str] = ()) -> list[str]:
    """Return a small built-in text corpus for tokenizer training (Spanish, English, code, symbols).

    The built-in paragraphs never change, so tokenizers trained on the default corpus are reproducible in
    any fresh clone without network. ``include_repo_docs`` appends the Markdown files under the repository's
    ``docs/`` folder when it exists (useful for a slightly richer vocabulary; the result then depends on the
    docs' content). ``extra`` texts are appended as given.
    """
    texts = list(_BUILTIN_PARAGRAPHS)
    if include_repo_docs:
        docs = Path(__file__).resolve().parents[2] / "docs"
        if docs.is_dir():
            texts.extend(p.read_text(encoding="utf-8", errors="replace") for p in sorted(docs.glob("*.md")))
    texts.extend(extra)
    return texts


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | Path | None = None,
    *,
    chat_template: str | None = CHAT_TEMPLATE,
    model_max_length: int = 1024,
    min_frequency: int = 2,
) -> Any:
    """Train a byte-level BPE tokenizer locally and return it as a ``PreTrainedTokenizerFast``.

    The tokenizer is GPT-2-like: byte-level pre-tokenization (every UTF-8 string round-trips byte-exactly),
    ``<|endoftext|>`` as both bos and eos (id 0), ``<|pad|>`` (id 1), plus ``<|im_start|>``/``<|im_end|>``
    special tokens used by the optional ChatML ``chat_template``. No bos token is prepended when encoding.

    Args:
        texts: training texts.
        vocab_size: target vocabulary size including the 256 byte tokens and the special tokens; a small
            corpus may yield fewer tokens.
        out_dir: when given, the tokenizer is saved there with ``save_pretrained`` (loadable with
            ``AutoTokenizer.from_pretrained(out_dir)``).
        chat_template: a jinja chat template to store with the tokenizer, or None for none.
        model_max_length: stored as the tokenizer's ``model_max_length``.
        min_frequency: minimum pair frequency for a merge.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]
    if vocab_size < 256 + len(special):
        raise ValueError(f"vocab_size must be at least {256 + len(special)} (bytes + special tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    if out_dir is not None:
        save_tokenizer(fast, out_dir)
    return fast


def save_tokenizer(tokenizer: Any, out_dir: str | Path) -> Path:
    """Save ``tokenizer`` with ``save_pretrained`` and make the files portable.

    The chat template is also written into ``tokenizer_config.json`` (transformers 5 keeps it only in
    ``chat_template.jinja``, which packaging globs such as ``*.json`` miss); ``tokenizer_class`` is set to
    ``PreTrainedTokenizerFast`` (a name older transformers versions also know; only 5.x is tested), and
    load-time keys (``is_local``, ``local_files_only``) are dropped.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only"):
        cfg.pop(key, None)
    if getattr(tokenizer, "chat_template", None):
        cfg["chat_template"] = tokenizer.chat_template
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return out


def tiny_config(
    arch: Arch = "gpt2",
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    bos_token_id: int = 0,
    eos_token_id: int = 0,
    pad_token_id: int = 1,
    **overrides: Any,
) -> Any:
    """Build a small ``transformers`` config for ``arch``.

    ``llama``, ``qwen2`` and ``mistral`` use grouped-query attention (``num_kv_heads`` defaults to half the
    heads). ``falcon`` has the falcon-rw-1b layout (ALiBi, no multi-query, sequential attention/MLP, biases),
    the model of the seed project's ``predict.py``. ``overrides`` are passed to the config class.
    """
    from transformers import FalconConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    if hidden_size % num_heads:
        raise ValueError("hidden_size must be divisible by num_heads")
    kv = num_kv_heads if num_kv_heads is not None else max(1, num_heads // 2)
    inter = intermediate_size if intermediate_size is not None else 4 * hidden_size
    ids: dict[str, Any] = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id}
    cfg: Any
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_positions=max_position_embeddings,
            n_inner=intermediate_size,
            **ids,
            **overrides,
        )
    elif arch in ("llama", "qwen2", "mistral"):
        # One Llama-style family; Qwen2 ties its embeddings, Mistral's sliding window is off (full attention).
        family: dict[str, tuple[Any, dict[str, Any]]] = {
            "llama": (LlamaConfig, {}),
            "qwen2": (Qwen2Config, {"tie_word_embeddings": True}),
            "mistral": (MistralConfig, {"sliding_window": None}),
        }
        config_class, family_kw = family[arch]
        cfg = config_class(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=inter,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=kv,
            max_position_embeddings=max_position_embeddings,
            **family_kw,
            **ids,
            **overrides,
        )
    elif arch == "falcon":
        falcon_kw: dict[str, Any] = {
            "alibi": True,
            "multi_query": False,
            "new_decoder_architecture": False,
            "parallel_attn": False,
            "bias": True,
        }
        falcon_kw.update(overrides)
        cfg = FalconConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            max_position_embeddings=max_position_embeddings,
            **ids,
            **falcon_kw,
        )
    else:
        raise ValueError(f"unknown arch {arch!r}; expected one of gpt2, llama, falcon, qwen2, mistral")
    return cfg


def gpt2_small_config(**overrides: Any) -> Any:
    """The GPT-2-small shape: 124M parameters, n_embd 768, 12 layers, 12 heads, vocab 50257, 1024 ctx."""
    from transformers import GPT2Config

    kw: dict[str, Any] = {
        "vocab_size": 50257,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_positions": 1024,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 1,
    }
    kw.update(overrides)
    return GPT2Config(**kw)


def falcon_rw_1b_config(**overrides: Any) -> Any:
    """The tiiuae/falcon-rw-1b shape (1.3B params): 2048 hidden, 24 layers, 32 heads, ALiBi, vocab 50304."""
    from transformers import FalconConfig

    kw: dict[str, Any] = {
        "vocab_size": 50304,
        "hidden_size": 2048,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "alibi": True,
        "multi_query": False,
        "new_decoder_architecture": False,
        "parallel_attn": False,
        "bias": True,
        "max_position_embeddings": 2048,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 1,
    }
    kw.update(overrides)
    return FalconConfig(**kw)


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        return {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[dtype]
    return dtype


def make_model_from_config(
    config: Any,
    out_dir: str | Path,
    *,
    seed: int = 0,
    dtype: Any = None,
    tokenizer: Any = None,
    tokenizer_vocab_size: int | None = None,
) -> Path:
    """Instantiate ``config`` with random weights (seeded), save it with a tokenizer, return the directory.

    ``tokenizer`` defaults to one trained on :func:`sample_corpus` with ``min(config.vocab_size,
    tokenizer_vocab_size or 1024)`` tokens; the model's vocabulary may be larger than the tokenizer's (never
    smaller). Weights are saved as safetensors, with a ``generation_config.json``.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        size = min(int(config.vocab_size), tokenizer_vocab_size or 1024)
        tokenizer = train_tokenizer(sample_corpus(), size, model_max_length=_max_positions(config))
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model vocabulary is {config.vocab_size}"
        )
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch_dtype = _resolve_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model = model.to(torch_dtype)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    _pin_config_dtype(out / "config.json", torch_dtype)
    return out


def _max_positions(config: Any) -> int:
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 1024


def _pin_config_dtype(path: Path, dtype: Any) -> None:
    """Record the weights' dtype in config.json under both the old and the new key."""
    name = str(dtype).removeprefix("torch.")
    data = json.loads(path.read_text())
    data["torch_dtype"] = name
    data["dtype"] = name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def make_tiny_model(
    out_dir: str | Path,
    arch: Arch = "gpt2",
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
    dtype: Any = None,
    tokenizer_texts: Iterable[str] | None = None,
    **config_overrides: Any,
) -> Path:
    """Build a random-weight ``arch`` model with a locally trained tokenizer and save it to ``out_dir``.

    The result loads with ``AutoModelForCausalLM.from_pretrained(path)`` and
    ``AutoTokenizer.from_pretrained(path)``. Defaults are tiny (64 hidden, 2 layers, 4 heads, vocabulary
    1024: well under a megabyte). llama/qwen2/mistral get grouped-query attention (``num_kv_heads`` defaults
    to ``num_heads // 2``). Deterministic given ``seed`` (weights) and the tokenizer corpus
    (``tokenizer_texts``, default :func:`sample_corpus`). ``dtype``: torch dtype or "float32"/"bfloat16"/
    "float16" (default float32). Returns ``Path(out_dir)``.
    """
    config = tiny_config(
        arch,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        **config_overrides,
    )
    texts = list(tokenizer_texts) if tokenizer_texts is not None else sample_corpus()
    tokenizer = train_tokenizer(texts, vocab_size, model_max_length=max_position_embeddings)
    return make_model_from_config(config, out_dir, seed=seed, dtype=dtype, tokenizer=tokenizer)
