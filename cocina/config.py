"""Project configuration: `cocina.yaml` (a superset of `cog.yaml`) or `cog.yaml` -> a typed, frozen
`ProjectConfig`.

Every error is a `ConfigError` that names the file, the key path, the line, and what to do about it.
"""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import os
import pathlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "CONFIG_FILES",
    "BuildConfig",
    "ConfigError",
    "ProjectConfig",
    "cog_deprecations",
    "find_module_spec",
    "is_module_ref",
    "load_project",
]

CONFIG_FILES = ("cocina.yaml", "cog.yaml")

_TOP_KEYS = (
    "build",
    "predict",
    "run",
    "train",
    "concurrency",
    "environment",
    "image",
    "cocina",
    "weights",
    "tests",
    "model",
)
MINIMUM_PYTHON = (3, 10)  # Cog refuses older `build.python_version`s
_BUILD_KEYS = (
    "python_version",
    "python_requirements",
    "python_packages",
    "system_packages",
    "gpu",
    "cuda",
    "cudnn",
    "run",
    "pre_install",
    "sdk_version",
    "cog_runtime",
    "fast",
)
_CONCURRENCY_KEYS = ("max",)



def default_data_dir() -> pathlib.Path:
    """Where the local hub and, by default, `cocina serve`'s store live: `$COCINA_HOME`, else `~/.cocina`."""
    return pathlib.Path(os.environ.get("COCINA_HOME") or pathlib.Path.home() / ".cocina")

class ConfigError(Exception):
    """A problem in the project configuration, located as precisely as possible."""

    def __init__(
        self,
        message: str,
        *,
        path: pathlib.Path | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.key = key
        self.line = line
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.path) if self.path else "config"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {f'{self.key}: ' if self.key else ''}{self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


@dataclass(frozen=True)
class BuildConfig:
    """The `build:` section. cocina does not build images; it reads these to check and document the
    environment."""

    python_version: str | None = None
    python_requirements: str | None = None
    python_packages: tuple[str, ...] = ()
    system_packages: tuple[str, ...] = ()
    gpu: bool = False
    cuda: str | None = None
    run: tuple[str, ...] = ()


# `package.module:Name`: dotted identifiers, no `.py`, no path separators.
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_module_ref(ref: str) -> bool:
    """True for a module reference (`cocina.llm:LLMPredictor`), False for a file one (`predict.py:Predictor`).

    A file reference ends in `.py` or has a path separator; anything else that is a dotted name is a module."""
    target = ref.partition(":")[0]
    return not target.endswith(".py") and _MODULE_NAME.match(target) is not None


def find_module_spec(module: str, root: pathlib.Path) -> importlib.machinery.ModuleSpec | None:
    """Where `module` would be imported from by the worker (the project directory first on `sys.path`), found
    without executing any module that is not imported yet.

    `importlib.util.find_spec("a.b")` imports package `a` (running its `__init__`, which may be user code), so
    packages not yet imported are walked through their spec's `submodule_search_locations` instead.
    """
    parts = module.split(".")
    spec: importlib.machinery.ModuleSpec | None = None
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        if spec is None:
            # Top level: the project directory first (as the worker's sys.path), then every finder of this
            # environment (site-packages, editable installs); neither runs the module.
            spec = importlib.machinery.PathFinder.find_spec(name, [str(root)]) or importlib.util.find_spec(name)
        elif name.rpartition(".")[0] in sys.modules:
            spec = importlib.util.find_spec(name)  # the parent is imported already: nothing new runs
        else:
            locations = spec.submodule_search_locations
            spec = importlib.machinery.PathFinder.find_spec(name, list(locations)) if locations else None
        if spec is None:
            return None
    return spec


@dataclass(frozen=True)
class ProjectConfig:
    """A loaded project. `predict_ref` is like "predict.py:Predictor" or "package.module:Predictor"; `cocina`
    holds the cocina-only section; `module_file` is the source of a module reference's module, if it has one."""

    root: pathlib.Path
    config_file: pathlib.Path
    predict_ref: str
    build: BuildConfig = field(default_factory=BuildConfig)
    concurrency_max: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    train: str | None = None
    cocina: Mapping[str, Any] = field(default_factory=dict)
    module_file: pathlib.Path | None = None
    warnings: tuple[str, ...] = ()  # deprecated fields, worded as Cog words them (commands print them)

    @property
    def predict_module(self) -> str | None:
        """The module of a module reference (`cocina.llm` for `cocina.llm:LLMPredictor`); None for a file."""
        return self.predict_ref.split(":", 1)[0] if is_module_ref(self.predict_ref) else None

    @property
    def predict_name(self) -> str:
        """The predictor's class or function name (after the `:`)."""
        return self.predict_ref.split(":", 1)[1]

    @property
    def predict_file(self) -> pathlib.Path:
        """The predictor's source file (a module reference's module file, when it has Python source)."""
        if self.predict_module is not None and self.module_file is not None:
            return self.module_file
        return self.root / self.predict_ref.split(":", 1)[0]

    @property
    def model(self) -> str | None:
        """`cocina.model`: a model id or path for the built-in LLM predictor, if set."""
        value = self.cocina.get("model")
        return str(value) if value is not None else None

    @property
    def engine(self) -> Mapping[str, Any]:
        """`cocina.engine`: engine options, passed on as given."""
        value = self.cocina.get("engine")
        return value if isinstance(value, Mapping) else {}


class _Reader:
    """Walks the composed YAML node tree, so each error can point to the line of the offending key."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def error(
        self, message: str, key: str | None, node: yaml.Node | None, hint: str | None = None
    ) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(message, path=self.path, key=key, line=line, hint=hint)

    def mapping(
        self, node: yaml.Node, key: str | None, allowed: tuple[str, ...] | None
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(f"must be a mapping, got {_kind(node)}", key, node)
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            full = f"{key}.{name}" if key else str(name)
            if not isinstance(name, str):
                raise self.error("keys must be strings", key, key_node)
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(allowed)}"
                raise self.error("unknown key", full, key_node, hint)
            if name in out:
                raise self.error("key given twice", full, key_node)
            out[name] = value_node
        return out

    def scalar(self, node: yaml.Node, key: str, tag_kind: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(f"must be a {tag_kind}, got {_kind(node)}", key, node)
        value = yaml.safe_load(yaml.serialize(node))
        return value

    def string(self, node: yaml.Node, key: str, *, allow_number: bool = False) -> str | None:
        value = self.scalar(node, key, "string")
        if value is None:
            return None
        if isinstance(value, bool) or (not isinstance(value, str) and not allow_number):
            raise self.error(f"must be a string, got {value!r}", key, node)
        if not isinstance(value, str | int | float):
            raise self.error(f"must be a string, got {value!r}", key, node)
        return str(value)

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.scalar(node, key, "boolean")
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(f"must be true or false, got {value!r}", key, node)
        return value

    def string_list(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(f"must be a list of strings, got {_kind(node)}", key, node)
        items = []
        for index, item in enumerate(node.value):
            if isinstance(item, yaml.MappingNode) and key.endswith("build.run"):
                # Cog allows `- command: ...` entries (with mounts); cocina keeps the command only.
                entry = self.mapping(item, f"{key}[{index}]", None)
                if "command" not in entry:
                    raise self.error("a run entry needs a `command`", f"{key}[{index}]", item)
                items.append(str(self.string(entry["command"], f"{key}[{index}].command")))
                continue
            value = self.string(item, f"{key}[{index}]", allow_number=True)
            if value is None:
                raise self.error("must not be empty", f"{key}[{index}]", item)
            items.append(value)
        return tuple(items)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(yaml.safe_load(yaml.serialize(node)))


def _to_python(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _find_config(root: pathlib.Path) -> pathlib.Path:
    for name in CONFIG_FILES:
        candidate = root / name
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no cocina.yaml or cog.yaml in {root}",
        path=root,
        hint="run `cocina init` to create one, or pass the project directory",
    )


def load_project(directory: pathlib.Path) -> ProjectConfig:
    """Read and check `cocina.yaml` (or else `cog.yaml`) in `directory`.

    Checks keys and types, that the predictor file exists and that it defines the named class or function (by
    reading its source, without importing it). Raises `ConfigError`.
    """
    root = pathlib.Path(directory).resolve()
    path = _find_config(root)
    reader = _Reader(path)
    text = path.read_text()
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path, line=line) from exc
    if document is None:
        raise ConfigError("the file is empty", path=path, hint='add `predict: "predict.py:Predictor"`')
    top = reader.mapping(document, None, _TOP_KEYS)

    if "predict" in top and "run" in top:
        raise reader.error("give either `predict` or `run`, not both", "run", top["run"])
    ref_key = "predict" if "predict" in top else "run"
    if ref_key not in top:
        raise ConfigError(
            "no predictor configured",
            path=path,
            key="predict",
            hint='add `predict: "predict.py:Predictor"`',
        )
    predict_ref = reader.string(top[ref_key], ref_key)
    target, _, name = (predict_ref or "").partition(":")
    if not target or not name or not name.isidentifier():
        raise reader.error(
            f"must look like 'predict.py:Predictor' (or 'package.module:Predictor'), got {predict_ref!r}",
            ref_key,
            top[ref_key],
        )
    assert predict_ref is not None
    module_file = None
    if is_module_ref(predict_ref):
        module_file = _check_module_predictor(reader, root, predict_ref, ref_key, top[ref_key])
    else:
        _check_predictor(reader, root, predict_ref, ref_key, top[ref_key])

    build = BuildConfig()
    if "build" in top and not (
        isinstance(top["build"], yaml.ScalarNode) and _to_python(top["build"]) is None
    ):
        build_nodes = reader.mapping(top["build"], "build", _BUILD_KEYS)
        build = BuildConfig(
            python_version=reader.string(
                build_nodes["python_version"], "build.python_version", allow_number=True
            )
            if "python_version" in build_nodes
            else None,
            python_requirements=reader.string(build_nodes["python_requirements"], "build.python_requirements")
            if "python_requirements" in build_nodes
            else None,
            python_packages=reader.string_list(build_nodes["python_packages"], "build.python_packages")
            if "python_packages" in build_nodes
            else (),
            system_packages=reader.string_list(build_nodes["system_packages"], "build.system_packages")
            if "system_packages" in build_nodes
            else (),
            gpu=reader.boolean(build_nodes["gpu"], "build.gpu") if "gpu" in build_nodes else False,
            cuda=reader.string(build_nodes["cuda"], "build.cuda", allow_number=True)
            if "cuda" in build_nodes
            else None,
            run=reader.string_list(build_nodes["run"], "build.run") if "run" in build_nodes else (),
        )
        if build.python_version is not None:
            _check_python_version(reader, build.python_version, build_nodes["python_version"])
        if build.python_requirements is not None and not (root / build.python_requirements).is_file():
            raise reader.error(
                f"file {build.python_requirements!r} not found in {root}",
                "build.python_requirements",
                build_nodes["python_requirements"],
            )

    concurrency_max = 1
    if "concurrency" in top:
        conc = reader.mapping(top["concurrency"], "concurrency", _CONCURRENCY_KEYS)
        if "max" in conc:
            value = reader.scalar(conc["max"], "concurrency.max", "integer")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise reader.error(f"must be an integer >= 1, got {value!r}", "concurrency.max", conc["max"])
            concurrency_max = value

    environment: dict[str, str] = {}
    if "environment" in top:
        for index, entry in enumerate(reader.string_list(top["environment"], "environment")):
            name, sep, value = entry.partition("=")
            if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
                item_node = top["environment"].value[index]
                raise reader.error(
                    f"must be KEY=VALUE, got {entry!r}",
                    f"environment[{index}]",
                    item_node,
                    'e.g. "HF_HOME=/cache"',
                )
            environment[name] = value

    image = reader.string(top["image"], "image") if "image" in top else None
    train = reader.string(top["train"], "train") if "train" in top else None
    if train is not None:
        train_target, _, train_name = train.partition(":")
        if not train_target or not train_name or not train_name.isidentifier():
            raise reader.error(
                f"must look like 'train.py:train' (or 'train.py:Trainer'), got {train!r}", "train", top["train"]
            )
        if is_module_ref(train):
            _check_module_predictor(reader, root, train, "train", top["train"])
        else:
            _check_predictor(reader, root, train, "train", top["train"])

    cocina: dict[str, Any] = {}
    if "cocina" in top:
        reader.mapping(top["cocina"], "cocina", None)
        cocina = _to_python(top["cocina"]) or {}

    return ProjectConfig(
        root=root,
        config_file=path,
        warnings=cog_deprecations(path, _to_python(document)),
        predict_ref=predict_ref,
        build=build,
        concurrency_max=concurrency_max,
        environment=environment,
        image=image,
        train=train,
        cocina=cocina,
        module_file=module_file,
    )


def cog_deprecations(path: pathlib.Path, document: Mapping[str, Any]) -> tuple[str, ...]:
    """The deprecation warnings Cog gives for a cog.yaml (its parsed `document`); none for cocina.yaml, where
    `predict:` and `concurrency: max:` are cocina's own keys."""
    if path.name != "cog.yaml":
        return ()
    found: list[str] = []
    if "predict" in document:
        found.append('deprecated field "predict": use "run" instead')
    concurrency = document.get("concurrency")
    if isinstance(concurrency, Mapping) and "max" in concurrency:
        found.append('deprecated field "concurrency.max": use "@cog.concurrent(max=...)" instead')
    build = document.get("build")
    if isinstance(build, Mapping):
        if build.get("python_packages"):
            found.append('deprecated field "build.python_packages": use "build.python_requirements" instead')
        if build.get("pre_install"):
            found.append('deprecated field "build.pre_install": use "build.run" instead')
    return tuple(found)


def _check_python_version(reader: _Reader, version: str, node: yaml.Node) -> None:
    """`build.python_version` must be MAJOR.MINOR[.PATCH] and at least 3.10, as Cog requires."""
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise reader.error(
            f'invalid build.python_version "{version}": must be MAJOR.MINOR, e.g. "3.12"', None, node
        )
    if (int(parts[0]), int(parts[1])) < MINIMUM_PYTHON:
        minimum = ".".join(map(str, MINIMUM_PYTHON))
        raise reader.error(
            f'invalid build.python_version "{version}": minimum supported Python version is {minimum}', None, node
        )


def _check_predictor(reader: _Reader, root: pathlib.Path, ref: str, key: str, node: yaml.Node) -> None:
    """The predictor file must exist and define the name; checked from the source text, never by importing
    it."""
    file_part, _, name = ref.partition(":")
    file_path = root / file_part
    if not file_path.is_file():
        raise reader.error(f"predictor file {file_part!r} not found in {root}", key, node)
    _check_defines(reader, file_path, file_part, name, key, node)


def _check_module_predictor(
    reader: _Reader, root: pathlib.Path, ref: str, key: str, node: yaml.Node
) -> pathlib.Path | None:
    """A module reference's module must be importable (from the project directory or this environment) and,
    when it is Python source, define the name; checked without importing it. Returns its source file."""
    module, _, name = ref.partition(":")
    try:
        spec = find_module_spec(module, root)
    except (ImportError, ValueError) as exc:  # e.g. a parent that is a module, not a package
        raise reader.error(f"cannot find module {module!r}: {exc}", key, node) from None
    if spec is None:
        raise reader.error(
            f"module {module!r} not found in {root} or this Python environment",
            key,
            node,
            f"a file reference needs `.py` (e.g. '{module.replace('.', '/')}.py:{name}'); "
            "a module must be importable",
        )
    origin = spec.origin
    if origin is None or not origin.endswith(".py") or not pathlib.Path(origin).is_file():
        return None  # a compiled or namespace module: nothing to read; the worker reports a missing name
    source = pathlib.Path(origin)
    _check_defines(reader, source, module, name, key, node)
    return source


def _check_defines(
    reader: _Reader, file_path: pathlib.Path, file_part: str, name: str, key: str, node: yaml.Node
) -> None:
    """`file_path` (shown as `file_part`) defines `name` at top level (a class, function, assignment or
    import), read by `ast`."""
    import ast

    try:
        tree = ast.parse(file_path.read_text(), filename=str(file_path))
    except SyntaxError as exc:
        raise ConfigError(
            f"cannot parse the predictor: {exc.msg}", path=file_path, line=exc.lineno, key=None
        ) from exc
    defined: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            defined.append(stmt.name)
        elif isinstance(stmt, ast.Assign):
            defined.extend(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.ImportFrom | ast.Import):
            if any(a.name == "*" for a in stmt.names):
                return  # `from x import *`: what it defines is not in this file's text
            defined.extend((a.asname or a.name).split(".")[0] for a in stmt.names)
    if name not in defined:
        listing = ", ".join(n for n in defined if not n.startswith("_")) or "nothing"
        close = difflib.get_close_matches(name, defined, n=1)
        hint = f"did you mean `{file_part}:{close[0]}`?" if close else f"{file_part} defines: {listing}"
        raise reader.error(f"{file_part} has no class or function {name!r}", key, node, hint)
