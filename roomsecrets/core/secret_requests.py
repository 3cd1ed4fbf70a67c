"""Asking a person for a secret (``request_secret``): where the answer is kept.

The seed's family has two prompts: an OAuth approval, and a secret the person
types or pastes (an API key for a URL). The second is stored as the person's
own secret, delegated as the requester asked, under an id made from the URL and
the MIME type. So asking again for the same URL and type finds it and hands it
back with no prompt, as a stored OAuth credential is.
"""

from __future__ import annotations

import hashlib

from .inputs import MAX_NAME

__all__ = ["PREFIX", "requested_secret_id", "requested_secret_name"]

#: Every requested secret's id starts with this, so a person can tell them apart.
PREFIX = "requested-"


def requested_secret_id(url: str, type: str) -> str:
    """The id of the secret requested for ``url`` of MIME ``type``.

    A digest, so any URL gives a short id that every store accepts; the URL
    itself is the secret's display name. Length-prefixed, so no (url, type)
    pair meets another.

    >>> requested_secret_id("https://api.example.com", "text/plain")
    'requested-e12b13875a3251f5ced4d066f82e0022'
    """
    # The client has checked both are text UTF-8 can encode.
    text = f"{len(url)}:{url}{type}".encode()
    return PREFIX + hashlib.sha256(text).hexdigest()[:32]


def requested_secret_name(url: str) -> str:
    """The display name of a requested secret: its URL, cut to the longest name allowed."""
    return url if len(url) <= MAX_NAME else url[: MAX_NAME - 1] + "\u2026"
