"""`Input(...)`: the default and constraints of one predictor argument, as in Cog.

It only records what it is given. Whether the constraints fit the argument's type is checked by
`cocina.sdk.schema.derive_schema`, which knows the argument's name and type and can say which argument is
wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "FieldInfo", "Input"]


class _Missing:
    """The 'no default' marker; `...` (Ellipsis) means the same, as in Cog and pydantic."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True, eq=False)
class FieldInfo:
    """What `Input(...)` returns; read by the schema module, never by user code."""

    default: Any = MISSING
    default_factory: Callable[[], Any] | None = None
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    choices: tuple[Any, ...] | None = None
    deprecated: bool | None = None
    accept: str | None = None

    @property
    def has_default(self) -> bool:
        """True when the argument may be left out (a default value or a default factory)."""
        return self.default is not MISSING or self.default_factory is not None


def Input(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    description: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    regex: str | None = None,
    choices: Sequence[Any] | None = None,
    deprecated: bool | None = None,
    accept: str | None = None,
) -> Any:
    """Describe a predictor argument: its default, description and constraints.

    `accept` (for `Path` and `File` inputs) lists the file types the input takes, as an HTML `accept` attribute
    does: MIME types or extensions, comma-separated (`"image/*"`, `".safetensors,.bin"`).

    Returns a `FieldInfo` (typed `Any` so that `x: int = Input(...)` type-checks in user code).
    """
    if default is ...:
        default = MISSING
    if default is not MISSING and default_factory is not None:
        raise TypeError("Input(): give either `default` or `default_factory`, not both")
    if default_factory is not None and not callable(default_factory):
        raise TypeError("Input(): `default_factory` must be callable")
    if isinstance(choices, str):
        # A str is a Sequence; Input(choices="abc") is almost certainly a mistake.
        raise TypeError("Input(): `choices` must be a list of values, not a string")
    if accept is not None and (not isinstance(accept, str) or not accept.strip()):
        raise TypeError("Input(): `accept` must be a non-empty string such as 'image/*' or '.png,.jpg'")
    return FieldInfo(
        default=default,
        default_factory=default_factory,
        description=description,
        ge=ge,
        le=le,
        min_length=min_length,
        max_length=max_length,
        regex=regex,
        choices=tuple(choices) if choices is not None else None,
        deprecated=deprecated,
        accept=accept,
    )
