"""Resolve a model id or path to a local directory, never downloading anything.

cocina runs on machines that cannot reach the Hugging Face Hub, so a model is either the built-in demo
model, a local directory, or a snapshot already in the local Hugging Face cache (``HF_HUB_CACHE``, or
``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``). Anything else raises :class:`ModelNotFoundError`
with instructions for providing the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from cocina.demo import DEMO_MODEL_ALIASES, DEMO_MODEL_ID, demo_model_dir

__all__ = ["ModelNotFoundError", "hub_cache_dir", "resolve_model"]


class ModelNotFoundError(FileNotFoundError):
    """The model is neither built in, a local directory, nor in the local Hugging Face cache."""

    # Its message says everything (what was looked for, where, how to get it): a worker reporting it as a
    # failed setup shows the message without a traceback of cocina's own loading code.
    show_traceback = False

    def __init__(self, model_id: str, message: str) -> None:
        super().__init__(message)
        self.model_id = model_id

    def __str__(self) -> str:
        return str(self.args[0])


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache directory in effect (honours HF_HUB_CACHE and HF_HOME)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
        return Path(os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub"))


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "./", "../", "~", "\\"))
        or value in {".", ".."}
        or value.count("/") > 1
        or (len(value) > 1 and value[1] == ":")
    )


def _not_found(model_id: str, cache: Path, reason: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        model_id,
        f"Model {model_id!r} {reason}. cocina never downloads models at run time, and the Hugging Face Hub "
        f"cannot be reached from this machine.\n"
        f"To provide it, either:\n"
        f"  1. on a machine with internet access run `huggingface-cli download {model_id}` "
        f"(or `hf download {model_id}`), then copy that machine's cache directory "
        f"(~/.cache/huggingface/hub) to {cache} here, or point HF_HOME (or HF_HUB_CACHE) at the copied "
        f"cache; or\n"
        f"  2. pass a local directory holding the model (config.json, weights, tokenizer files), "
        f"for example one written by save_pretrained.\n"
        f"The built-in demo model works offline as {DEMO_MODEL_ID!r}.",
    )


def resolve_model(
    id_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Return the local directory of a model given its id or path, without any network access.

    * ``"cocina/demo"`` or ``"demo"``: the built-in demo model's directory;
    * an existing local directory: that directory (resolved);
    * a hub id (``"org/name"``): its snapshot in the local Hugging Face cache (``cache_dir`` or the default
      cache), looked up with ``local_files_only=True``; ``revision`` selects a branch, tag or commit.

    Raises :class:`ModelNotFoundError` (a ``FileNotFoundError``) with instructions otherwise.
    """
    raw = os.fspath(id_or_path)
    value = raw.strip()
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    if value in DEMO_MODEL_ALIASES:
        return demo_model_dir()
    if not value:
        raise _not_found(raw, cache, "is not an existing local directory (the name is empty)")
    local = Path(value).expanduser()
    if local.is_dir():
        return local.resolve()
    if _looks_like_path(value) or local.exists():
        raise _not_found(value or raw, cache, "is not an existing local directory")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(value, revision=revision, cache_dir=cache, local_files_only=True)
    except HFValidationError as exc:
        raise _not_found(value, cache, f"is neither a local directory nor a valid hub id ({exc})") from None
    except (LocalEntryNotFoundError, FileNotFoundError):
        where = f" (revision {revision!r})" if revision else ""
        raise _not_found(value, cache, f"isn't in the local Hugging Face cache{where} at {cache}") from None
    return Path(str(snapshot))
