"""One rule for every JSON-able config dataclass: unknown keys are an error that names them (configs are edited by
hand, and a misspelt key silently falling back to its default is the worst kind of bug)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any], *, name: str | None = None) -> T:
    """``cls(**data)`` for a dataclass ``cls``, with a clear error for a non-mapping or unknown keys."""
    name = name or cls.__name__
    if not isinstance(data, Mapping):
        raise TypeError(f"{name} expects a mapping (as written by its to_dict()), got {type(data).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {name} keys {unknown}; valid keys are {sorted(known)}")
    return cls(**data)
