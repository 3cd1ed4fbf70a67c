"""The pure-stdlib core of roomsecrets.

Vendorable: copy this folder into any project under any name; it imports only
the standard library and itself (relatively). CPython 3.9+.
"""

from .api import SecretsAPI
from .audit import AuditEvent, AuditSink, RecordingAuditSink, null_audit_sink
from .authorization import build_authorization_url
from .client import SecretsClient
from .errors import *  # noqa: F403 - the error hierarchy is public as a whole
from .errors import __all__ as _error_names
from .grants import GrantDecision, OAuthRule, SecretsGrant
from .http import HttpRequest, HttpResponse
from .memory_store import MemoryStore
from .pkce import generate_pkce_pair, generate_verifier, s256_challenge, validate_verifier
from .ports import HttpTransport, Lease, SecretKey, SecretRecord, SecretStore
from .retry import RetryPolicy
from .service import OAuthPrompt, SecretInfo, SecretsService
from .token_request import (
    ClientAuthMethod,
    ClientCredentials,
    build_authorization_code_request,
    build_refresh_request,
)
from .token_response import parse_token_response
from .tokens import TokenSet
from .urllib_transport import UrllibTransport

__all__ = [
    *_error_names,
    "AuditEvent",
    "AuditSink",
    "GrantDecision",
    "MemoryStore",
    "OAuthPrompt",
    "OAuthRule",
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
    "build_refresh_request",
    "generate_pkce_pair",
    "generate_verifier",
    "parse_token_response",
    "s256_challenge",
    "validate_verifier",
]
