"""The pure-stdlib core of roomsecrets.

Vendorable: copy this folder into any project under any name; it imports only
the standard library and itself (relatively). CPython 3.9+.

Importing the package loads only the error hierarchy; every other public name is
imported on first use (PEP 562), so ``import roomsecrets`` stays cheap for a CLI,
a serverless function or a process that needs one piece.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F403 - the error hierarchy is public as a whole
from .errors import __all__ as _error_names

if TYPE_CHECKING:
    from .api import SecretsAPI
    from .audit import AuditEvent, AuditSink, RecordingAuditSink, null_audit_sink
    from .client import SecretsClient
    from .grants import GrantDecision, OAuthRule, SecretsGrant
    from .memory_store import MemoryStore
    from .oauth.authorization import build_authorization_url
    from .oauth.discovery import (
        ProviderMetadata,
        build_metadata_request,
        metadata_urls,
        parse_metadata_response,
    )
    from .oauth.http import HttpRequest, HttpResponse
    from .oauth.pkce import generate_pkce_pair, generate_verifier, s256_challenge, validate_verifier
    from .oauth.retry import RetryPolicy
    from .oauth.revocation import build_revocation_request, check_revocation_response
    from .oauth.token_request import (
        ClientAuthMethod,
        ClientCredentials,
        build_authorization_code_request,
        build_refresh_request,
    )
    from .oauth.token_response import parse_token_response
    from .oauth.tokens import TokenSet
    from .oauth.urllib_transport import UrllibTransport
    from .pending.registry import PendingRegistry
    from .ports import HttpTransport, Lease, SecretKey, SecretRecord, SecretStore
    from .service import OAuthPrompt, SecretInfo, SecretsService

#: Public name -> the module (in this package) that defines it.
_LAZY = {
    "SecretsAPI": "api",
    "AuditEvent": "audit",
    "AuditSink": "audit",
    "RecordingAuditSink": "audit",
    "null_audit_sink": "audit",
    "build_authorization_url": "oauth.authorization",
    "SecretsClient": "client",
    "ProviderMetadata": "oauth.discovery",
    "build_metadata_request": "oauth.discovery",
    "metadata_urls": "oauth.discovery",
    "parse_metadata_response": "oauth.discovery",
    "GrantDecision": "grants",
    "OAuthRule": "grants",
    "SecretsGrant": "grants",
    "HttpRequest": "oauth.http",
    "HttpResponse": "oauth.http",
    "MemoryStore": "memory_store",
    "PendingRegistry": "pending.registry",
    "generate_pkce_pair": "oauth.pkce",
    "generate_verifier": "oauth.pkce",
    "s256_challenge": "oauth.pkce",
    "validate_verifier": "oauth.pkce",
    "HttpTransport": "ports",
    "Lease": "ports",
    "SecretKey": "ports",
    "SecretRecord": "ports",
    "SecretStore": "ports",
    "RetryPolicy": "oauth.retry",
    "build_revocation_request": "oauth.revocation",
    "check_revocation_response": "oauth.revocation",
    "OAuthPrompt": "service",
    "SecretInfo": "service",
    "SecretsService": "service",
    "ClientAuthMethod": "oauth.token_request",
    "ClientCredentials": "oauth.token_request",
    "build_authorization_code_request": "oauth.token_request",
    "build_refresh_request": "oauth.token_request",
    "parse_token_response": "oauth.token_response",
    "TokenSet": "oauth.tokens",
    "UrllibTransport": "oauth.urllib_transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    *_error_names,
    "AuditEvent",
    "AuditSink",
    "GrantDecision",
    "MemoryStore",
    "OAuthPrompt",
    "OAuthRule",
    "PendingRegistry",
    "ProviderMetadata",
    "RecordingAuditSink",
    "RetryPolicy",
    "SecretInfo",
    "SecretsAPI",
    "SecretsClient",
    "SecretsGrant",
    "SecretsService",
    "UrllibTransport",
    "null_audit_sink",
    "ClientAuthMethod",
    "ClientCredentials",
    "HttpRequest",
    "HttpResponse",
    "HttpTransport",
    "Lease",
    "SecretKey",
    "SecretRecord",
    "SecretStore",
    "TokenSet",
    "build_authorization_code_request",
    "build_authorization_url",
    "build_metadata_request",
    "build_refresh_request",
    "build_revocation_request",
    "check_revocation_response",
    "generate_pkce_pair",
    "generate_verifier",
    "metadata_urls",
    "parse_metadata_response",
    "parse_token_response",
    "s256_challenge",
    "validate_verifier",
]
