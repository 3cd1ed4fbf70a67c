"""roomsecrets: let AI agents get a person's OAuth tokens safely.

This module re-exports the public core API, each name imported on first use
(PEP 562), so ``import roomsecrets`` is cheap. It imports nothing outside the
standard library; adapters (aiohttp, boto3) live in ``roomsecrets.adapters`` and
are imported only when asked for.
"""

from typing import TYPE_CHECKING, Any

from . import core
from .core import __all__ as __all__

if TYPE_CHECKING:
    from .core import *  # noqa: F403

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
