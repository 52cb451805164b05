"""load_project: cocina.yaml / cog.yaml into ProjectConfig, and located errors."""

import pathlib
import re

import pytest

from cocina.config import ConfigError, load_project

PREDICT = (
    "from cog import BasePredictor\n\n"
    "class Predictor(BasePredictor):\n    def predict(self) -> str:\n        return ''\n"
)


def _project(tmp_path: pathlib.Path, config: str, name: str = "cog.yaml") -> pathlib.Path:
    (tmp_path / "predict.py").write_text(PREDICT)
    (tmp_path / name).write_text(config)
    return tmp_path


def test_full_cog_yaml(tmp_path: pathlib.Path) -> None:
    (tmp_path / "requirements.txt").write_text("torch\n")
    project = load_project(
        _project(
            tmp_path,
            'build:\n  gpu: true\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
            "  system_packages: [ffmpeg]\n  run:\n    - echo hi\n    - command: echo there\n"
            'predict: "predict.py:Predictor"\nconcurrency:\n  max: 4\nenvironment:\n  - HF_HOME=/cache\n'
            "image: r8.im/me/model\n",
        )
    )
    assert project.predict_ref == "predict.py:Predictor"
    assert project.build.gpu is True and project.build.python_version == "3.11"
    assert project.build.system_packages == ("ffmpeg",)
    assert project.build.run == ("echo hi", "echo there")
    assert project.concurrency_max == 4
    assert project.environment == {"HF_HOME": "/cache"}
    assert project.image == "r8.im/me/model"
    assert project.config_file.name == "cog.yaml"


def test_run_key_and_cocina_section_prefer_cocina_yaml(tmp_path: pathlib.Path) -> None:
    _project(tmp_path, 'predict: "predict.py:Predictor"\n')
    (tmp_path / "cocina.yaml").write_text(
        'run: "predict.py:Predictor"\ncocina:\n  model: tiny\n  engine:\n    max_num_seqs: 8\n'
    )
    project = load_project(tmp_path)
    assert project.config_file.name == "cocina.yaml"
    assert project.predict_ref == "predict.py:Predictor"
    assert project.model == "tiny"
    assert project.engine == {"max_num_seqs": 8}
    assert project.concurrency_max == 1


def test_unknown_key_has_line_and_suggestion(tmp_path: pathlib.Path) -> None:
    _project(tmp_path, 'predict: "predict.py:Predictor"\nbuild:\n  gpu: true\n  pyhton_version: "3.11"\n')
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    err = info.value
    assert err.key == "build.pyhton_version" and err.line == 4
    assert err.hint == "did you mean `python_version`?"
    assert "cog.yaml:4: build.pyhton_version: unknown key" in str(err)


@pytest.mark.parametrize(
    ("config", "key", "line", "message"),
    [
        (
            'predict: "predict.py:Predictor"\nbuild:\n  gpu: "yes please"\n',
            "build.gpu",
            3,
            "must be true or false",
        ),
        ('predict: "predict.py:Predictor"\nconcurrency:\n  max: 0\n', "concurrency.max", 3, "integer >= 1"),
        ('predict: "predict.py:Predictor"\nbuild: [1]\n', "build", 2, "must be a mapping"),
        ('predict: "predict.py:Predictor"\nenvironment:\n  - NOVALUE\n', "environment[0]", 3, "KEY=VALUE"),
        ('predict: "predict.py"\n', "predict", 1, "must look like"),
    ],
)
def test_wrong_types(tmp_path: pathlib.Path, config: str, key: str, line: int, message: str) -> None:
    _project(tmp_path, config)
    with pytest.raises(ConfigError, match=message) as info:
        load_project(tmp_path)
    assert (info.value.key, info.value.line) == (key, line)


def test_missing_predictor_file_and_class(tmp_path: pathlib.Path) -> None:
    _project(tmp_path, 'predict: "other.py:Predictor"\n')
    with pytest.raises(ConfigError, match=r"'other\.py' not found"):
        load_project(tmp_path)
    _project(tmp_path, 'predict: "predict.py:Predicter"\n')
    with pytest.raises(ConfigError, match="has no class or function 'Predicter'") as info:
        load_project(tmp_path)
    assert info.value.hint == "did you mean `predict.py:Predictor`?"


def test_no_config_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=r"no cocina\.yaml or cog\.yaml") as info:
        load_project(tmp_path)
    assert info.value.hint is not None and "cocina init" in info.value.hint


def test_invalid_yaml_has_a_line(tmp_path: pathlib.Path) -> None:
    _project(tmp_path, 'predict: "predict.py:Predictor"\nbuild:\n  gpu: [\n')
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_project(tmp_path)
    assert info.value.line is not None


def test_module_reference_is_found_without_importing(tmp_path: pathlib.Path) -> None:
    """`package.module:Name`: found on the project directory or the environment, never imported (a package
    whose `__init__` raises proves it), and its source read for the name."""
    import sys

    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported while checking the config')\n")
    (pkg / "llm.py").write_text("from cocina.llm import LLMPredictor\n\nclass Predictor(LLMPredictor):\n    pass\n")
    _project(tmp_path, 'predict: "userpkg.llm:Predictor"\n')
    project = load_project(tmp_path)
    assert project.predict_module == "userpkg.llm" and project.predict_name == "Predictor"
    assert project.predict_file == pkg / "llm.py"
    assert "userpkg" not in sys.modules and "userpkg.llm" not in sys.modules

    _project(tmp_path, 'predict: "cocina.llm:LLMPredictor"\n')  # an installed package
    builtin = load_project(tmp_path)
    assert builtin.predict_module == "cocina.llm" and builtin.predict_file.name == "__init__.py"

    _project(tmp_path, 'predict: "predict.py:Predictor"\n')  # file references are as they were
    plain = load_project(tmp_path)
    assert plain.predict_module is None and plain.predict_file == tmp_path / "predict.py"


@pytest.mark.parametrize(
    ("ref", "message", "hint"),
    [
        ("no_such_pkg.mod:Predictor", "module 'no_such_pkg.mod' not found", "'no_such_pkg/mod.py:Predictor'"),
        ("cocina.llm:LLMPredicter", "cocina.llm has no class or function 'LLMPredicter'", "cocina.llm:LLMPredictor"),
        ("cocina.llm:", "must look like", None),
        ("cocina llm:X", r"not found", None),
    ],
)
def test_module_reference_errors(tmp_path: pathlib.Path, ref: str, message: str, hint: str | None) -> None:
    _project(tmp_path, f'predict: "{ref}"\n')
    with pytest.raises(ConfigError, match=message) as info:
        load_project(tmp_path)
    assert info.value.key == "predict" and info.value.line == 1
    if hint is not None:
        assert info.value.hint is not None and hint in info.value.hint


@pytest.mark.parametrize("version", ["3.7", "3.9", "2.7"])
def test_python_older_than_3_10_is_refused_as_cog_refuses_it(tmp_path: pathlib.Path, version: str) -> None:
    with pytest.raises(ConfigError, match=f'invalid build.python_version "{version}": minimum supported Python'):
        load_project(_project(tmp_path, f'build:\n  python_version: "{version}"\npredict: "predict.py:Predictor"\n'))


def test_a_python_version_must_be_major_minor(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=re.escape('invalid build.python_version "three": must be MAJOR.MINOR')):
        load_project(_project(tmp_path, 'build:\n  python_version: "three"\npredict: "predict.py:Predictor"\n'))
    assert load_project(_project(tmp_path, 'build:\n  python_version: "3.13.1"\nrun: "predict.py:Predictor"\n'))


def test_cogs_deprecation_warnings_for_cog_yaml_only(tmp_path: pathlib.Path) -> None:
    config = (
        "build:\n  python_packages: [torch]\n  pre_install: [echo hi]\n"
        'predict: "predict.py:Predictor"\nconcurrency:\n  max: 2\n'
    )
    warnings = load_project(_project(tmp_path, config)).warnings
    assert warnings == (
        'deprecated field "predict": use "run" instead',
        'deprecated field "concurrency.max": use "@cog.concurrent(max=...)" instead',
        'deprecated field "build.python_packages": use "build.python_requirements" instead',
        'deprecated field "build.pre_install": use "build.run" instead',
    )
    assert load_project(_project(tmp_path, 'run: "predict.py:Predictor"\n')).warnings == ()
    (tmp_path / "cog.yaml").unlink()
    # In cocina.yaml `predict:` and `concurrency: max:` are cocina's own keys.
    assert load_project(_project(tmp_path, config, "cocina.yaml")).warnings == ()


def test_the_train_entry_point_is_checked_like_the_predictor(tmp_path: pathlib.Path) -> None:
    (tmp_path / "train.py").write_text("def train(n: int) -> str:\n    return ''\n")
    base = 'run: "predict.py:Predictor"\n'
    assert load_project(_project(tmp_path, base + 'train: "train.py:train"\n')).train == "train.py:train"
    with pytest.raises(ConfigError, match=re.escape("train: train.py has no class or function 'Trainer'")):
        load_project(_project(tmp_path, base + 'train: "train.py:Trainer"\n'))
    with pytest.raises(ConfigError, match=re.escape("train: predictor file 'missing.py' not found")):
        load_project(_project(tmp_path, base + 'train: "missing.py:train"\n'))
    with pytest.raises(ConfigError, match=re.escape("train: must look like 'train.py:train'")):
        load_project(_project(tmp_path, base + 'train: "train.py"\n'))


def test_cogs_model_key_is_accepted(tmp_path: pathlib.Path) -> None:
    assert load_project(_project(tmp_path, 'run: "predict.py:Predictor"\nmodel: me/model\n'))
