#!/usr/bin/env python
"""Train cocina's built-in demo model (a small Spanish GPT-2) on CPU, reproducibly, with no network.

Corpus (all in ``cocina/demo/corpus/``, committed):
  * ``seed_*.txt``: the project's five Spanish seed documents (about deploying LLMs, Replicate, Cog, costs);
  * ``preguntas.txt``: hand-written questions and answers about the same content (and cleaning products,
    the seed's example prompt), rendered as ``"Pregunta: ...\\nRespuesta: ...<|endoftext|>"``.

Steps: train a byte-level BPE tokenizer (``cocina.models.tiny.train_tokenizer``), build a GPT-2
(n_embd 256, 4 layers, 4 heads, 512 positions), train it with AdamW and warmup + cosine learning rate on
windows of 256 tokens that start at a paragraph or question boundary, then save model (safetensors, fp32),
tokenizer, ``generation_config.json`` and ``training.json`` (settings, losses, time, sample answers).

Usage::

    python scripts/train_demo_model.py                       # writes cocina/demo/model/
    python scripts/train_demo_model.py --steps 50 --out /tmp/demo   # a quick smoke run

Results are deterministic for the same ``--seed``, ``--threads`` and torch build.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cocina.demo import DEMO_MODEL_ID, demo_corpus_dir, format_prompt  # noqa: E402
from cocina.models.tiny import EOS_TOKEN, PAD_TOKEN, save_tokenizer, train_tokenizer  # noqa: E402

#: Chat template for the demo tokenizer: user turns become "Pregunta: ...", assistant turns "Respuesta: ...".
#: System messages are dropped (the model was never trained to follow them).
DEMO_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'Pregunta: ' + (message['content'] | trim) + '\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ 'Respuesta: ' + (message['content'] | trim) + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Respuesta:' }}{% endif %}"
)

SAMPLE_QUESTIONS = (
    "Dime un producto de limpieza que blanquee la ropa",
    "¿Qué es Replicate?",
    "¿Qué es un despliegue?",
    "¿Cuánto cuesta alojar Llama 3 70b?",
    "¿Qué producto uso para limpiar los cristales?",
)


@dataclass
class Settings:
    """Training settings, recorded in training.json."""

    steps: int = 600
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 40
    weight_decay: float = 0.01
    qa_fraction: float = 0.6
    vocab_size: int = 4096
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 512
    seed: int = 0
    threads: int = 1


def read_qa(path: Path) -> list[tuple[list[str], str]]:
    """Parse preguntas.txt into (question variants, answer) pairs."""
    blocks: list[tuple[list[str], str]] = []
    questions: list[str] = []
    for raw in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.startswith("P:"):
            questions.append(line[2:].strip())
        elif line.startswith("R:"):
            if not questions:
                raise ValueError(f"{path}: answer without question: {line!r}")
            blocks.append((questions, line[2:].strip()))
            questions = []
        elif line:
            raise ValueError(f"{path}: unexpected line {line!r}")
    return blocks


def load_corpus(corpus: Path) -> tuple[list[str], list[str]]:
    """Return (seed paragraphs, rendered question/answer examples)."""
    paragraphs: list[str] = []
    for path in sorted(corpus.glob("seed_*.txt")):
        text = path.read_text(encoding="utf-8")
        # Units start at each non-empty line so training windows begin at natural boundaries.
        paragraphs.extend(chunk + "\n" for chunk in re.split(r"\n+", text) if chunk.strip())
    examples = [
        f"{format_prompt(q)} {answer}{EOS_TOKEN}" for questions, answer in read_qa(corpus / "preguntas.txt")
        for q in questions
    ]
    return paragraphs, examples


class Stream:
    """A token stream with the offsets where training windows may start."""

    def __init__(self, ids: list[int], starts: list[int], seq_len: int) -> None:
        self.ids = ids
        limit = len(ids) - seq_len - 1
        self.starts = [s for s in starts if s <= limit] or [0]

    def window(self, rng: random.Random, seq_len: int) -> list[int]:
        start = rng.choice(self.starts)
        return self.ids[start : start + seq_len + 1]


def build_stream(units: list[str], tok: Any, seq_len: int, repeats: int, rng: random.Random) -> Stream:
    """Concatenate ``repeats`` shuffled copies of ``units`` (tokenized), remembering unit starts."""
    encoded = [tok(u, add_special_tokens=False)["input_ids"] for u in units]
    ids: list[int] = []
    starts: list[int] = []
    for _ in range(repeats):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for i in order:
            starts.append(len(ids))
            ids.extend(encoded[i])
    while len(ids) < seq_len + 2:  # tiny corpora (smoke tests): repeat until one window fits
        ids.extend(ids)
    return Stream(ids, starts, seq_len)


def lr_at(step: int, s: Settings) -> float:
    """Linear warmup then cosine decay from ``lr`` to ``min_lr``."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def answer(model: Any, tok: Any, question: str, max_new_tokens: int = 60) -> str:
    """Greedy answer of ``model`` to ``question`` in the demo prompt format."""
    import torch

    enc = tok(format_prompt(question), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return str(tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)).strip()


def train(s: Settings, out: Path) -> dict[str, Any]:
    """Train the demo model with settings ``s`` and save it to ``out``; return the training record."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    rng = random.Random(s.seed)
    t0 = time.time()

    paragraphs, examples = load_corpus(demo_corpus_dir())
    tok = train_tokenizer(
        [*paragraphs, *examples],
        s.vocab_size,
        chat_template=DEMO_CHAT_TEMPLATE,
        model_max_length=s.n_positions,
    )
    print(f"tokenizer: {len(tok)} tokens, trained in {time.time() - t0:.1f}s", flush=True)
    seeds = build_stream(paragraphs, tok, s.seq_len, repeats=2, rng=rng)
    qa = build_stream(examples, tok, s.seq_len, repeats=8, rng=rng)
    n_seed_tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in paragraphs)
    n_qa_tokens = len(qa.ids) // 8
    print(f"corpus: {len(paragraphs)} paragraphs ({n_seed_tokens} tokens), {len(examples)} Q/A examples "
          f"({n_qa_tokens} tokens)", flush=True)

    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=s.n_embd,
        n_layer=s.n_layer,
        n_head=s.n_head,
        n_positions=s.n_positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2 {s.n_layer} layers x {s.n_embd}, {n_params / 1e6:.2f}M parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    model.train()
    losses: list[float] = []
    ema: float | None = None
    t_train = time.time()
    for step in range(s.steps):
        rows = [
            (qa if rng.random() < s.qa_fraction else seeds).window(rng, s.seq_len)
            for _ in range(s.batch_size)
        ]
        batch = torch.tensor(rows, dtype=torch.long)
        lr = lr_at(step, s)
        for group in opt.param_groups:
            group["lr"] = lr
        logits = model(input_ids=batch[:, :-1]).logits
        targets = batch[:, 1:].reshape(-1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = float(loss.detach())
        losses.append(value)
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        if step % 10 == 0 or step == s.steps - 1:
            elapsed = time.time() - t_train
            eta = elapsed / (step + 1) * (s.steps - step - 1)
            done = int(30 * (step + 1) / s.steps)
            print(f"[{'#' * done}{'.' * (30 - done)}] step {step + 1}/{s.steps} loss {value:.3f} "
                  f"(avg {ema:.3f}) lr {lr:.2e} {elapsed:.0f}s eta {eta:.0f}s", flush=True)
    train_s = time.time() - t_train

    model.eval()
    samples = {q: answer(model, tok, q) for q in SAMPLE_QUESTIONS}
    for q, a in samples.items():
        print(f"\nPregunta: {q}\nRespuesta: {a}", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        do_sample=False,
        max_new_tokens=80,
    )
    model.save_pretrained(out)
    save_tokenizer(tok, out)
    assert tok.pad_token == PAD_TOKEN
    final = sum(losses[-20:]) / min(20, len(losses))
    record: dict[str, Any] = {
        "model_id": DEMO_MODEL_ID,
        "command": "python scripts/train_demo_model.py " + " ".join(sys.argv[1:]),
        "settings": asdict(s),
        "parameters": n_params,
        "tokenizer_size": len(tok),
        "corpus": {"paragraphs": len(paragraphs), "seed_tokens": n_seed_tokens,
                   "qa_examples": len(examples), "qa_tokens": n_qa_tokens},
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t0, 1),
        "final_loss_last20": round(final, 4),
        "loss_every_50": [round(x, 4) for x in losses[::50]],
        "torch": torch.__version__,
        "samples": samples,
    }
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    (out / "training.json").write_text(text, encoding="utf-8")
    print(f"\nsaved to {out} in {record['total_seconds']}s; final loss (last 20 steps) {final:.3f}")
    return record


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    defaults = Settings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "cocina" / "demo" / "model", help="output directory")
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps")
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads (1-2 here)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--seq-len", type=int, default=defaults.seq_len)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    args = p.parse_args(argv)
    s = Settings(steps=args.steps, threads=args.threads, batch_size=args.batch_size, seq_len=args.seq_len,
                 lr=args.lr, seed=args.seed, warmup=min(defaults.warmup, max(1, args.steps // 10)))
    train(s, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
