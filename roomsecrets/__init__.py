"""roomsecrets: let AI agents get a person's OAuth tokens safely.

This module re-exports the public core API. It imports nothing outside the
standard library; adapters (aiohttp, boto3) live in ``roomsecrets.adapters``
and are imported only when asked for.
"""

from .core import *  # noqa: F403 - the core's public API is ours
from .core import __all__ as __all__

__version__ = "0.1.0"
