"""Pinned: the in-process client takes every argument of the SecretsAPI protocol, with the
protocol's defaults, so agent code written against the protocol behaves the same on it."""

from __future__ import annotations

import inspect

import pytest

from roomsecrets.core.api import SecretsAPI
from roomsecrets.core.client import SecretsClient

_METHODS = [
    "list_user_secrets",
    "delete_user_secret",
    "request_oauth_token",
    "get_offline_oauth_token",
    "provide_oauth_authorization",
    "reject_oauth_authorization",
    "oauth_prompts",
    "set_secret",
    "get_secret",
    "close",
]


@pytest.mark.parametrize("method", _METHODS)
def test_the_client_takes_each_protocol_argument_with_the_same_default(method: str) -> None:
    protocol = inspect.signature(getattr(SecretsAPI, method)).parameters
    client = inspect.signature(getattr(SecretsClient, method)).parameters
    for name, parameter in protocol.items():
        assert name in client, f"{method}: the client has no {name!r}"
        assert client[name].kind == parameter.kind, f"{method}: {name!r}"
        assert client[name].default == parameter.default, f"{method}: {name!r}"


def test_the_protocol_defaults_are_the_documented_ones() -> None:
    request = inspect.signature(SecretsAPI.request_oauth_token).parameters
    assert (request["timeout"].default, request["no_pkce"].default) == (300, False)
    offline = inspect.signature(SecretsAPI.get_offline_oauth_token).parameters
    assert offline["timeout"].default == 300
    assert inspect.signature(SecretsAPI.set_secret).parameters["type"].default == (
        "application/octet-stream"
    )
