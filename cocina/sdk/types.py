"""The types a Cog predictor uses in its signature: `Path`, `File`, `Secret`, iterator markers, `BaseModel`.

They are plain Python classes; the schema module reads them from type hints. Each carries pydantic hooks only so a
user's `BaseModel` output may hold a `Path` or a `Secret` field, as it can in Cog.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel
from pydantic_core import core_schema

__all__ = [
    "AsyncConcatenateIterator",
    "BaseModel",
    "CancelationException",
    "ConcatenateIterator",
    "File",
    "Path",
    "Secret",
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
