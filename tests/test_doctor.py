"""`cocina doctor`: each check's findings, each fix's edit, and when a fix refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cocina.doctor import report, run_doctor

STARTER = (
    "from cog import BasePredictor, Input\n\n\n"
    "class Predictor(BasePredictor):\n"
    "    def setup(self) -> None:\n        self.prefix = 'hello '\n\n"
    "    def predict(self, s: str = Input(description='who')) -> str:\n        return self.prefix + s\n"
)


def _project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _doctor(root: Path, *, fix: bool = False) -> tuple[int, str]:
    lines: list[str] = []
    code = report(run_doctor(root, fix=fix), fix=fix, echo=lines.append)
    return code, "\n".join(lines)


def test_a_clean_project(tmp_path: Path) -> None:
    root = _project(tmp_path, {"cog.yaml": 'run: "run.py:Runner"\n', "run.py": STARTER.replace("Predictor", "Runner")})
    assert _doctor(root) == (
        0,
        "Config\n  ✓ Config file\n  ✓ Deprecated fields\n  ✓ Predict reference\n"
        "  ✓ Deprecated predict interface names\nPython\n  ✓ Deprecated imports\n  ✓ Pydantic BaseModel workaround\n"
        "\nno issues found",
    )


@pytest.mark.parametrize(
    ("config", "files", "message"),
    [
        ('predict: "predict.py:Predictor"\n', {}, "predict.py not found"),
        ('run: "run.py:DoesNotExist"\n', {"run.py": "class Runner: ...\n"}, "DoesNotExist not found in run.py"),
        ('run: "run.py"\n', {}, "run reference 'run.py' must be in the form 'file.py:ClassName'"),
        ("build: {}\n", {}, "no predictor: neither run nor predict is set"),
        ('run: "run.py:Runner"\n', {"run.py": "class Runner(:\n"}, "cannot parse run.py"),
        ("[not, a, mapping]\n", {}, "must be a mapping of keys"),
        ("run: [unclosed\n", {}, "not valid YAML"),
    ],
)
def test_config_errors(tmp_path: Path, config: str, files: dict[str, str], message: str) -> None:
    code, text = _doctor(_project(tmp_path, {"cog.yaml": config, **files}))
    assert code == 1 and message in text


def test_no_config_at_all(tmp_path: Path) -> None:
    code, text = _doctor(tmp_path)
    assert code == 1 and "no cocina.yaml or cog.yaml" in text


def test_deprecated_fields_are_warnings(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        {
            "cog.yaml": 'build:\n  python_packages: [torch]\nrun: "run.py:Runner"\nconcurrency:\n  max: 2\n',
            "run.py": "class Runner: ...\n",
        },
    )
    code, text = _doctor(root)
    assert code == 0
    assert '"build.python_packages" is deprecated: use "build.python_requirements" instead' in text
    assert '"concurrency.max" is deprecated: use "@cog.concurrent(max=...)" instead' in text
    assert text.endswith("Found 2 warnings.")


def test_deprecated_imports_are_removed_with_their_filters(tmp_path: Path) -> None:
    source = (
        "import warnings\n"
        "from cog import BaseRunner, ExperimentalFeatureWarning\n"
        "from cog.types import ExperimentalFeatureWarning as Again\n"
        'warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)\n'
        'warnings.filterwarnings("once", category=DeprecationWarning)\n\n'
        "class Runner(BaseRunner):\n    def run(self) -> str:\n        return 'ok'\n"
    )
    root = _project(tmp_path, {"cog.yaml": 'run: "run.py:Runner"\n', "run.py": source})
    code, text = _doctor(root)
    assert code == 1 and "run.py:2 — ExperimentalFeatureWarning was removed in Cog 0.17" in text
    assert 'Run "cocina doctor --fix" to auto-fix.' in text
    code, text = _doctor(root, fix=True)
    assert code == 0 and "✓ Fixed: Deprecated imports" in text and "Fixed 2 issues." in text
    assert (root / "run.py").read_text() == (
        "import warnings\nfrom cog import BaseRunner\n"
        'warnings.filterwarnings("once", category=DeprecationWarning)\n\n'
        "class Runner(BaseRunner):\n    def run(self) -> str:\n        return 'ok'\n"
    )
    assert _doctor(root)[1].endswith("no issues found")


def test_pydantic_models_become_cogs(tmp_path: Path) -> None:
    source = (
        "from cog import BaseRunner, Path\nfrom pydantic import BaseModel, ConfigDict, Field\n\n\n"
        "class Outputs(BaseModel):\n    model_config = ConfigDict(arbitrary_types_allowed=True)\n    audio: Path\n\n\n"
        "class Runner(BaseRunner):\n    def run(self) -> Outputs:\n        return Outputs(audio=Path('a'))\n"
    )
    root = _project(tmp_path, {"cog.yaml": 'run: "run.py:Runner"\n', "run.py": source})
    code, text = _doctor(root)
    assert code == 1 and "Outputs inherits from pydantic.BaseModel with arbitrary_types_allowed" in text
    assert _doctor(root, fix=True)[0] == 0
    assert (root / "run.py").read_text() == (
        "from cog import BaseRunner, Path, BaseModel\nfrom pydantic import Field\n\n\n"
        "class Outputs(BaseModel):\n    audio: Path\n\n\n"
        "class Runner(BaseRunner):\n    def run(self) -> Outputs:\n        return Outputs(audio=Path('a'))\n"
    )


def test_predict_to_run_migration(tmp_path: Path) -> None:
    root = _project(
        tmp_path, {"cog.yaml": 'build:\n  gpu: false\npredict: "predict.py:Predictor"\n', "predict.py": STARTER}
    )
    code, text = _doctor(root)
    assert code == 0  # warnings only
    assert "predict in cog.yaml is deprecated; use run with run.py:Runner" in text
    assert "predict.py uses deprecated Predictor/BasePredictor/predict() names" in text
    code, text = _doctor(root, fix=True)
    assert code == 0 and "✓ Fixed: Deprecated predict interface names" in text
    assert not (root / "predict.py").exists()
    assert (root / "cog.yaml").read_text() == 'build:\n  gpu: false\nrun: "run.py:Runner"\n'
    assert (root / "run.py").read_text() == STARTER.replace("BasePredictor", "BaseRunner").replace(
        "class Predictor", "class Runner"
    ).replace("def predict(", "def run(")
    assert _doctor(root)[1].endswith("no issues found")
    result = subprocess.run(
        [sys.executable, "-m", "cocina.cli", "predict", str(root), "-i", "s=world"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout == "hello world\n", result.stderr  # the migrated project runs


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (STARTER.replace("class Predictor", "class Other"), None),  # nothing to migrate in predict.py
        (STARTER + "\n    def run(self) -> str:\n        return ''\n", "a single Predictor class with a single"),
        (STARTER + "\n\nclass Predictor(BasePredictor):\n    pass\n", "a single Predictor class"),
    ],
)
def test_migration_refuses_what_it_cannot_do_safely(tmp_path: Path, source: str, why: str | None) -> None:
    root = _project(tmp_path, {"cog.yaml": 'predict: "predict.py:Predictor"\n', "predict.py": source})
    code, text = _doctor(root, fix=True)
    assert code == 1 and "Could not fix:" in text
    if why is not None:
        assert f"Manual migration required: automatic migration only supports {why}" in text
    assert (root / "predict.py").read_text() == source and not (root / "run.py").exists()


def test_migration_never_overwrites_run_py(tmp_path: Path) -> None:
    root = _project(
        tmp_path, {"cog.yaml": 'predict: "predict.py:Predictor"\n', "predict.py": STARTER, "run.py": "# mine\n"}
    )
    code, text = _doctor(root, fix=True)
    assert code == 1 and "cannot migrate predict.py to run.py because run.py already exists" in text
    assert (root / "run.py").read_text() == "# mine\n" and (root / "predict.py").exists()


def test_cocina_yaml_keeps_predict(tmp_path: Path) -> None:
    root = _project(tmp_path, {"cocina.yaml": 'predict: "predict.py:Predictor"\n', "predict.py": STARTER})
    assert _doctor(root) == (0, _doctor(root)[1]) and _doctor(root)[1].endswith("no issues found")


def test_the_command(tmp_path: Path) -> None:
    root = _project(tmp_path, {"cog.yaml": 'predict: "predict.py:Predictor"\n'})
    result = subprocess.run(
        [sys.executable, "-m", "cocina.cli", "doctor", str(root), "--fix"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "experimental" in result.stderr
    assert "Remediation: Create predict.py or update the predict field in cog.yaml" in result.stderr
