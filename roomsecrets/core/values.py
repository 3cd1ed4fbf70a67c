"""``frozen_value``: the one decorator for immutable value and event classes.

STYLE.md rule 2 asks for frozen dataclasses with keyword-only fields. ``kw_only``
exists from Python 3.10; on 3.9 the fields stay positional-capable, which is
harmless because every caller in this package passes keywords.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, TypeVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - type checkers read the branch above

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda decorated: decorated


__all__ = ["exact_strings", "frozen_value"]

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, kw_only_default=True)
def frozen_value(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen dataclass with keyword-only fields (3.10+)."""
    if sys.version_info >= (3, 10):
        return dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    return dataclasses.dataclass(frozen=True)(cls)  # pragma: no cover


def exact_strings(values: tuple[object, ...]) -> bool:
    """True when every value is None or exactly a ``str`` (not a subclass, whose
    ``__eq__`` or ``__hash__`` could make a memo find a tuple it is not)."""
    for value in values:  # noqa: SIM110 - a loop, not all(genexpr): it runs on every OAuth call
        if value is not None and type(value) is not str:
            return False
    return True
