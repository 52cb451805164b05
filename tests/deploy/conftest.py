"""Build sources for the deploy tests (the echo project, a language-model project on a tiny model) and the real
tools each artifact is checked with. A missing tool fails the test with the command that installs it: the checks
are the point of these tests, never skipped silently."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cocina.deploy.source import BuildSource, project_source

ROOT = Path(__file__).resolve().parent.parent.parent
ECHO = ROOT / "tests" / "server" / "fixtures" / "projects" / "echo"
KEDA_CRD = ROOT.parent / "shared" / "conformance" / "keda" / "keda.sh_scaledobjects.yaml"


def tool(name: str) -> str:
    """The path of a checking tool: in this virtualenv (pip-installed) or on PATH (Debian's)."""
    local = Path(sys.prefix) / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/install-deploy-tools.sh` (scripts/test.sh does)")
    return found


@pytest.fixture(scope="session")
def echo_source() -> BuildSource:
    return project_source(ECHO, name="acme/echo")


@pytest.fixture(scope="session")
def llm_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A language-model project whose weights (a tiny random GPT-2) live outside it, as a user's would."""
    from cocina.models.tiny import make_tiny_model

    base = tmp_path_factory.mktemp("llm")
    model = Path(make_tiny_model(base / "weights" / "tiny-gpt2", arch="gpt2"))
    project = base / "chat"
    project.mkdir()
    (project / "cocina.yaml").write_text(
        f'predict: "cocina.llm:LLMPredictor"\nenvironment:\n  - COCINA_MAX_NUM_SEQS=8\ncocina:\n  model: {model}\n'
    )
    return project


@pytest.fixture(scope="session")
def llm_source(llm_project: Path) -> BuildSource:
    return project_source(llm_project, name="acme/chat")
