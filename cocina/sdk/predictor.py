"""Predictor base classes and loading a predictor from a `predict.py:Predictor` reference."""

from __future__ import annotations

import importlib.util
import inspect
import os
import pathlib
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from cocina.sdk.files import fetch_to_local, is_url
from cocina.sdk.types import File, Path

__all__ = [
    "BasePredictor",
    "BaseRunner",
    "PredictorLoadError",
    "get_predict_function",
    "get_weights_arg",
    "is_async_callable",
    "is_generator_callable",
    "load_predictor",
    "setup_accepts_weights",
    "setup_kwargs",
]


class BasePredictor:
    """Base class of a Cog predictor: `setup()` once, then `predict(**inputs)` per request."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Load the model, once, before any prediction; `weights` is passed only if declared."""

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Run one prediction; subclasses declare their inputs as typed keyword arguments."""
        raise NotImplementedError("predict() must be implemented")


class BaseRunner:
    """Cog's newer name for a predictor: `setup()` and `run(**inputs)`."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Load the model; called once before any run."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run one prediction."""
        raise NotImplementedError("run() must be implemented")


class PredictorLoadError(Exception):
    """`predict.py:Predictor` cannot be resolved: missing file, missing name, or not a predictor."""


def _predict_method_name(cls: type) -> str | None:
    """`predict` or `run`, whichever the class actually implements (a base class's placeholder does not
    count)."""
    for name, placeholder in (("predict", BasePredictor.predict), ("run", BaseRunner.run)):
        method = inspect.getattr_static(cls, name, None)
        if method is not None and callable(method) and method is not placeholder:
            return name
    return None


def get_predict_function(predictor: Any) -> Callable[..., Any]:
    """The callable that runs a prediction: the `predict`/`run` method of a class or instance, or the
    function itself.

    For a class this is the plain function (its first parameter is `self`); for an instance, the bound method.
    """
    if inspect.isfunction(predictor):
        return typing.cast(Callable[..., Any], predictor)
    cls = predictor if inspect.isclass(predictor) else type(predictor)
    name = _predict_method_name(cls)
    if name is None:
        raise PredictorLoadError(f"{cls.__name__} has no predict() or run() method")
    return typing.cast(Callable[..., Any], getattr(predictor, name))


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for `async def` functions and async generators (Cog runs those on an event loop, concurrently)."""
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def is_generator_callable(fn: Callable[..., Any]) -> bool:
    """True when calling `fn` gives a (sync or async) generator, i.e. the output is streamed item by item."""
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def load_predictor(ref: str, project_dir: pathlib.Path) -> Any:
    """Import `file.py:Name` from `project_dir` (or `package.module:Name` from the project directory or the
    environment) and return the predictor class or predict function.

    The project directory goes first on `sys.path` so `predict.py` can import its sibling modules, and the `cog`
    shim is installed first so an unchanged Cog predictor imports. Errors raised while importing the user's module
    propagate unchanged (the worker reports them with their traceback).
    """
    from cocina.config import is_module_ref
    from cocina.sdk.shim import install_cog_shim

    file_part, sep, name = ref.partition(":")
    if not sep or not file_part or not name:
        raise PredictorLoadError(f"predictor reference {ref!r} must look like 'predict.py:Predictor'")
    install_cog_shim()
    root = str(project_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    if is_module_ref(ref):
        try:
            module = importlib.import_module(file_part)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (file_part == exc.name or file_part.startswith(exc.name + ".")):
                raise PredictorLoadError(
                    f"predictor module {file_part!r} not found in {project_dir} or the installed packages"
                ) from None
            raise
        module_name = module.__name__
    else:
        path = (project_dir / file_part).resolve()
        if not path.is_file():
            raise PredictorLoadError(f"predictor file {file_part!r} not found in {project_dir}")
        module_name = path.stem if path.parent == pathlib.Path(root) else f"cocina_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PredictorLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        # Registered before exec so that dataclasses, pickling and pydantic can find the module by name.
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    obj = getattr(module, name, None)
    if obj is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(v) or inspect.isfunction(v))
            and getattr(v, "__module__", None) == module_name
        )
        listing = ", ".join(found) if found else "none"
        raise PredictorLoadError(
            f"{file_part} has no {name!r}; classes and functions defined there: {listing}"
        )
    if inspect.isfunction(obj):
        return obj
    if inspect.isclass(obj) and _predict_method_name(obj) is not None:
        return obj
    raise PredictorLoadError(
        f"{file_part}:{name} is not a predictor: expected a class with a predict() (or run()) method, "
        f"or a function; got {type(obj).__name__}"
    )


def setup_accepts_weights(setup: Callable[..., Any]) -> bool:
    """True when `setup` has a `weights` parameter (Cog passes weights only then)."""
    try:
        params = inspect.signature(setup).parameters
    except (TypeError, ValueError):
        return False
    return "weights" in params


def get_weights_arg(
    setup: Callable[..., Any], project_dir: pathlib.Path, environ: Mapping[str, str] | None = None
) -> Any:
    """The `weights` value for `setup`: from `COG_WEIGHTS` if set, else `./weights` if it exists, else None.

    The value's form follows the annotation of `weights`: `str` gets the URL/path string, `File` an open file,
    anything else (`Path`, unannotated) a `Path` (a URL is downloaded first, as Cog does for a `Path`
    weights).
    """
    env = os.environ if environ is None else environ
    try:
        annotation = typing.get_type_hints(setup).get("weights")
    except Exception:
        annotation = None
    if annotation is not None and typing.get_origin(annotation) is not None:
        # Optional[Path] and friends: look at the non-None member.
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else None

    source: str | None = env.get("COG_WEIGHTS") or None
    if source is None:
        local = project_dir / "weights"
        if not local.exists():
            return None
        source = str(local.resolve())
    if annotation is str:
        return source
    local_path = fetch_to_local(source) if is_url(source) else pathlib.Path(source)
    if annotation is File:
        return local_path.open("rb")
    return Path(local_path)


def setup_kwargs(
    predictor_instance: Any, project_dir: pathlib.Path, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments for `predictor_instance.setup(...)`: `{"weights": ...}` when setup accepts it, else
    `{}`."""
    setup = getattr(predictor_instance, "setup", None)
    if setup is None or not setup_accepts_weights(setup):
        return {}
    return {"weights": get_weights_arg(setup, project_dir, environ)}
