"""The types a Cog predictor uses in its signature: `Path`, `File`, `Secret`, iterator markers, `BaseModel`.

They are plain Python classes; the schema module reads them from type hints. Each carries pydantic hooks only so a
user's `BaseModel` output may hold a `Path` or a `Secret` field, as it can in Cog.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar, Union

import pydantic
from pydantic_core import core_schema

__all__ = [
    "AsyncConcatenateIterator",
    "BaseModel",
    "CancelationException",
    "ConcatenateIterator",
    "File",
    "Opaque",
    "Path",
    "Secret",
    "Weights",
]

T = TypeVar("T")

_URI_SCHEMA: dict[str, Any] = {"type": "string", "format": "uri"}
SECRET_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "password",
    "writeOnly": True,
    "x-cog-secret": True,
}
REDACTED = "**********"


class BaseModel(pydantic.BaseModel):
    """Base class of a structured output. A pydantic model (as in Cog 0.16), which also takes its fields
    positionally in declaration order, as Cog 0.17+'s dataclass-based `BaseModel` does: `Output("hi", 0.9)`."""

    def __init__(self, /, *args: Any, **data: Any) -> None:
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(
                    f"{type(self).__name__}() takes {len(names)} positional arguments but {len(args)} were given"
                )
            for name, value in zip(names, args, strict=False):
                if name in data:
                    raise TypeError(f"{type(self).__name__}() got multiple values for argument '{name}'")
                data[name] = value
        super().__init__(**data)


class Path(pathlib.PosixPath):
    """A file given to or returned by a predictor; in the request and response it is a URL (schema `format:
    uri`)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: pydantic.GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.to_string_ser_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: Any, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return dict(_URI_SCHEMA)

    @classmethod
    def _validate(cls, value: Any) -> Path:
        if isinstance(value, str | pathlib.PurePath):
            return cls(value)
        raise TypeError(f"expected a path, got {type(value).__name__}")


class File(io.IOBase):
    """Deprecated in Cog in favour of `Path`: an input arrives as an open binary file; an output may be any
    file object."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: pydantic.GetCoreSchemaHandler) -> Any:
        return core_schema.is_instance_schema(io.IOBase)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: Any, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return dict(_URI_SCHEMA)


class Secret:
    """A string that never shows itself in `repr`, `str`, logs or outputs; call `get_secret_value()` to read
    it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """Return the secret string."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: pydantic.GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            lambda v: v if isinstance(v, Secret) else Secret(str(v)),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _v: REDACTED),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: Any, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return dict(SECRET_SCHEMA)


class ConcatenateIterator(Iterator[T]):
    """Return annotation for a stream of tokens meant to be joined into one string (`x-cog-array-display`)."""

    def __next__(self) -> T:  # pragma: no cover - a marker type, never instantiated by cocina
        raise StopIteration


class AsyncConcatenateIterator(AsyncIterator[T]):
    """The async form of `ConcatenateIterator`, for `async def predict` generators."""

    async def __anext__(self) -> T:  # pragma: no cover - a marker type
        raise StopAsyncIteration


class CancelationException(BaseException):
    """Raised inside a synchronous `predict` when its prediction is canceled.

    A BaseException, as in Cog, so that a predictor's `except Exception` does not swallow the cancel.
    """


# The `weights` argument of `setup()` in Cog 0.13+: a local path, an open file or the URL string (cocina gives a
# `Path`, downloading a URL first; an annotation of exactly `File` or `str` gets that form instead).
Weights = Union[File, Path, str]  # noqa: UP007 - a runtime alias users put in annotations, as Cog defines it


class _Opaque:
    """`Annotated[T, Opaque]`: an input or output field taken as plain JSON (an object, or a list of objects when
    `T` is a list), whatever `T` is; its value is passed through as it comes."""

    def __repr__(self) -> str:
        return "cog.Opaque"

    def __get_pydantic_core_schema__(self, source: Any, handler: pydantic.GetCoreSchemaHandler) -> Any:
        # Any value is accepted and kept as it is; the JSON schema depends on the annotated type.
        return core_schema.any_schema(metadata={"cocina_opaque": opaque_schema(source)})

    def __get_pydantic_json_schema__(self, schema: Any, handler: pydantic.GetJsonSchemaHandler) -> dict[str, Any]:
        found = (schema.get("metadata") or {}).get("cocina_opaque")
        return dict(found) if isinstance(found, dict) else {"type": "object"}


Opaque = _Opaque()


def opaque_schema(annotated: Any) -> dict[str, Any]:
    """The JSON schema of an `Annotated[T, Opaque]` type: an object, or an array of objects when `T` is a list."""
    import typing

    inner = typing.get_args(annotated)[0] if typing.get_origin(annotated) is typing.Annotated else annotated
    if typing.get_origin(inner) in (list, tuple) or inner in (list, tuple):
        return {"type": "array", "items": {"type": "object"}}
    return {"type": "object"}


class ExperimentalFeatureWarning(FutureWarning):
    """Deprecated in Cog: no feature is experimental any more. Kept so that `from cog import
    ExperimentalFeatureWarning` and the `warnings.filterwarnings(...)` calls that use it keep working."""
