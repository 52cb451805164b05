"""Predictor base classes and loading a predictor from a `predict.py:Predictor` reference."""

from __future__ import annotations

import importlib.util
import inspect
import os
import pathlib
import sys
import typing
import warnings
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


class BaseRunner:
    """Base class of a Cog runner: `setup()` once, then `run(**inputs)` per request (Cog's newer names).

    A subclass that implements `predict()` instead of `run()` works too: `run()` then calls it.
    """

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Load the model, once, before any prediction; `weights` is passed only if declared."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run one prediction; subclasses declare their inputs as typed keyword arguments."""
        if _user_method(type(self), "predict") is not None:
            return self.predict(*args, **kwargs)
        raise NotImplementedError("run() must be implemented")

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Cog's older name for `run()`."""
        if _user_method(type(self), "run") is not None:
            return self.run(*args, **kwargs)
        raise NotImplementedError("predict() must be implemented")

    @property
    def scope(self) -> Any:
        """The running prediction's scope (`cocina.sdk.current_scope()`)."""
        from cocina.sdk.scope import current_scope

        return current_scope()

    def record_metric(self, key: str, value: Any, mode: str = "replace") -> None:
        """Record a metric on the running prediction (see `cocina.sdk.scope`)."""
        self.scope.record_metric(key, value, mode)


class BasePredictor(BaseRunner):
    """Cog's older name for `BaseRunner`, still accepted: `setup()` and `predict(**inputs)`."""


class PredictorLoadError(Exception):
    """`predict.py:Predictor` cannot be resolved: missing file, missing name, or not a predictor."""


_PLACEHOLDERS = {"run": BaseRunner.run, "predict": BaseRunner.predict}


def _user_method(cls: type, name: str) -> Any:
    """`cls`'s own `name` method (defined by the user's class or a mixin, not by BaseRunner), else None."""
    method = inspect.getattr_static(cls, name, None)
    if method is None or not callable(method) or method is _PLACEHOLDERS.get(name):
        return None
    return method


def _predict_method_name(cls: type, mode: str = "predict") -> str | None:
    """The method that runs a prediction (`predict` or `run`) or, in train mode, a training (`train`)."""
    if mode == "train":
        return "train" if _user_method(cls, "train") is not None else None
    for name in ("predict", "run"):
        if _user_method(cls, name) is not None:
            return name
    return None


def get_predict_function(predictor: Any, mode: str = "predict") -> Callable[..., Any]:
    """The callable that runs a prediction (or, with mode "train", a training): the `predict`/`run` (`train`)
    method of a class or instance, or the function itself.

    For a class this is the plain function (its first parameter is `self`); for an instance, the bound method.
    """
    if inspect.isfunction(predictor):
        return typing.cast(Callable[..., Any], predictor)
    cls = predictor if inspect.isclass(predictor) else type(predictor)
    name = _predict_method_name(cls, mode)
    if name is None:
        wanted = "train()" if mode == "train" else "predict() or run()"
        raise PredictorLoadError(f"{cls.__name__} has no {wanted} method")
    return typing.cast(Callable[..., Any], getattr(predictor, name))


def warn_deprecated_names(cls: type, class_name: str) -> None:
    """Cog's deprecation warnings for `predict()` and `BasePredictor`: DeprecationWarnings attributed to this
    module, so hidden unless warnings are turned on (cocina's own templates still use those names)."""
    if _user_method(cls, "predict") is not None and _user_method(cls, "run") is None:
        warnings.warn(f"{class_name}.predict() is deprecated; use run() instead", DeprecationWarning, stacklevel=2)
    if any(base is BasePredictor for base in inspect.getmro(cls)[1:]):
        warnings.warn("BasePredictor is deprecated; use BaseRunner instead", DeprecationWarning, stacklevel=2)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for `async def` functions and async generators (Cog runs those on an event loop, concurrently)."""
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def is_generator_callable(fn: Callable[..., Any]) -> bool:
    """True when calling `fn` gives a (sync or async) generator, i.e. the output is streamed item by item."""
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def load_predictor(ref: str, project_dir: pathlib.Path, mode: str = "predict") -> Any:
    """Import `file.py:Name` from `project_dir` (or `package.module:Name` from the project directory or the
    environment) and return the predictor class or predict function (with mode "train", the trainer class or
    train function of the project's `train:` reference).

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
    if inspect.isclass(obj) and _predict_method_name(obj, mode) is not None:
        if mode == "predict":
            if _user_method(obj, "predict") is not None and _user_method(obj, "run") is not None:
                raise PredictorLoadError(f"{name} must define either run() or predict(), not both")
            warn_deprecated_names(obj, name)
        return obj
    if mode == "train":
        raise PredictorLoadError(
            f"{file_part}:{name} is not a trainer: expected a class with a train() method, or a function; "
            f"got {type(obj).__name__}"
        )
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
