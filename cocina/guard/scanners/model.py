"""An optional model-based prompt-injection detector: a local Hugging Face sequence-classification model.

Only loaded when the guard file names it (`{type: prompt_injection_model, model: /path/to/dir}`): transformers
and the weights are imported at the first scan, from the directory given (`local_files_only`: nothing is
downloaded). It suits models such as ProtectAI's `deberta-v3-base-prompt-injection-v2` (labels `SAFE` and
`INJECTION`) fetched beforehand. `label` names the injection class (default: `INJECTION`, else the last label);
texts longer than the model's window are scored in overlapping windows and the highest score counts. A text is
flagged when that probability reaches `threshold`. Runs on CPU in the server's process: expect tens of
milliseconds per kilobyte for a DeBERTa-base, which is why the model-free detector is the default.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cocina.guard.scanners.base import Finding


class ModelInjectionScanner:
    name = "prompt_injection_model"
    redacts = False

    def __init__(self, model: str, threshold: float = 0.5, label: str | None = None, max_length: int = 512) -> None:
        if not Path(model).is_dir():
            raise ValueError(f"model: {model} is not a directory (a local Hugging Face model; nothing is downloaded)")
        self.path = model
        self.threshold = threshold
        self.label = label
        self.max_length = max_length
        self._loaded: tuple[Any, Any, int] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any, int]:
        with self._lock:
            if self._loaded is None:
                import torch
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(self.path, local_files_only=True)
                model.eval()
                labels = {str(v).upper(): int(k) for k, v in (model.config.id2label or {}).items()}
                wanted = (self.label or "INJECTION").upper()
                index = labels.get(wanted, model.config.num_labels - 1)
                torch.set_grad_enabled(False)
                self._loaded = (tokenizer, model, index)
            return self._loaded

    def score(self, text: str) -> float:
        """The highest probability of the injection class over the text's windows."""
        import torch

        tokenizer, model, index = self._load()
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [0]
        window = max(8, self.max_length - 2)
        best = 0.0
        for start in range(0, max(1, len(ids)), window // 2):
            chunk = ids[start : start + window]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([chunk])).logits[0]
            best = max(best, float(torch.softmax(logits.float(), -1)[index]))
            if start + window >= len(ids):
                break
        return best

    def find(self, text: str) -> list[Finding]:
        s = self.score(text)
        return [Finding("injection:model", 0, len(text), s)] if s >= self.threshold else []
