"""The seed's own project, as its walkthrough writes it (requirements.txt with torch, transformers, accelerate,
cog and replicate; `device_map="auto"`, which needs accelerate; python_version 3.13), runs with `cocina predict`
and no manual install: the requirements are checked, and what the server lacks is installed first (here a
package only a local wheelhouse has, found through pip's own PIP_FIND_LINKS, with no index)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub.wheels import make_wheel

pytest.importorskip("torch")

PREDICT = """
import seedhelper
from cog import BasePredictor, Input
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = {model!r}


class Predictor(BasePredictor):
    def setup(self):
        self.tokenizer = AutoTokenizer.from_pretrained(MODEL)
        self.model = AutoModelForCausalLM.from_pretrained(MODEL, device_map="auto")  # needs accelerate

    def predict(self, pregunta: str = Input(description="La pregunta")) -> str:
        inputs = self.tokenizer(seedhelper.prompt(pregunta), return_tensors="pt")
        out = self.model.generate(**inputs, max_new_tokens=8, do_sample=False)
        return self.tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
"""


def test_the_seeds_project_runs_without_manual_installs(tmp_path: Path) -> None:
    from cocina.models.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "falcon", arch="falcon")
    make_wheel(
        tmp_path / "wheels", "seedhelper", "1.0", "def prompt(q):\n    return 'Pregunta: ' + q + '\\nRespuesta:'\n"
    )
    project = tmp_path / "modelo_llm"
    project.mkdir()
    (project / "predict.py").write_text(PREDICT.format(model=str(model)))
    (project / "requirements.txt").write_text("torch\ntransformers\naccelerate\ncog\nreplicate\nseedhelper==1.0\n")
    (project / "cog.yaml").write_text(
        'build:\n  python_version: "3.13"\n  python_requirements: requirements.txt\npredict: "predict.py:Predictor"\n'
    )
    env = {
        **os.environ,
        "COCINA_HOME": str(tmp_path / "home"),
        "PIP_FIND_LINKS": str(tmp_path / "wheels"),
        "PIP_NO_INDEX": "1",
    }
    cmd = [sys.executable, "-m", "cocina.cli", "predict", str(project), "-i", "pregunta=¿Qué blanquea la ropa?"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "installed seedhelper-1.0" in result.stderr  # what the server lacked, installed first
    assert "this server runs Python" in result.stderr  # python_version 3.13: said, not refused
    assert "Traceback" not in result.stderr
    # Again: the environment is reused, nothing is installed.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "reusing environment" in again.stderr and "Installing" not in again.stderr
