"""The built-in demo model: a small Spanish GPT-2 that works with no network.

The weights live in this package (``cocina/demo/model/``: ``config.json``, ``model.safetensors``,
tokenizer files, ``generation_config.json``, ``training.json``). They were trained by
``scripts/train_demo_model.py`` on the text in ``cocina/demo/corpus/`` (the project's five Spanish seed
documents and a hand-written set of questions and answers about them); see ``docs/demo-model.md``.

The model answers prompts of the form :data:`DEMO_PROMPT_FORMAT`::

    Pregunta: Dime un producto de limpieza que blanquee la ropa
    Respuesta:

and stops with its eos token (``<|endoftext|>``). Its tokenizer's chat template renders chat messages in
the same format, so a chat API can serve it too.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DEMO_MODEL_ALIASES",
    "DEMO_MODEL_ID",
    "DEMO_PROMPT_FORMAT",
    "demo_corpus_dir",
    "demo_model_dir",
    "format_prompt",
]

#: The id under which cocina serves the demo model.
DEMO_MODEL_ID = "cocina/demo"
#: Names that :func:`cocina.models.resolve.resolve_model` maps to the demo model.
DEMO_MODEL_ALIASES: frozenset[str] = frozenset({"cocina/demo", "demo"})
#: The prompt the model was trained on; the answer follows "Respuesta:" after a space.
DEMO_PROMPT_FORMAT = "Pregunta: {pregunta}\nRespuesta:"

_HERE = Path(__file__).resolve().parent


def demo_model_dir() -> Path:
    """Return the directory holding the demo model's weights and tokenizer (loadable offline).

    Raises ``FileNotFoundError`` if the weights are missing (a broken install or checkout).
    """
    path = _HERE / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the demo model's weights are missing from {path}; rebuild them with "
            "`python scripts/train_demo_model.py` or reinstall cocina"
        )
    return path


def demo_corpus_dir() -> Path:
    """Return the directory with the exact texts the demo model was trained on."""
    return _HERE / "corpus"


def format_prompt(pregunta: str) -> str:
    """Format a question as the demo model's prompt: ``"Pregunta: {pregunta}\\nRespuesta:"``.

    Surrounding whitespace is stripped and inner newlines become spaces (the model saw single-line questions).
    """
    clean = " ".join(pregunta.split())
    return DEMO_PROMPT_FORMAT.format(pregunta=clean)
