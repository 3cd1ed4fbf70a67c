"""The sans-I/O OAuth protocol pieces, and the stdlib transport that sends them.

PKCE (RFC 7636), authorization URLs (RFC 6749 §4.1.1), token requests and
responses (RFC 6749 §4.1.3, §5, §6), ``TokenSet``, authorization-server metadata
(RFC 8414), revocation (RFC 7009), retry decisions, endpoint checks, the HTTP
values, and ``UrllibTransport``. Each takes data and returns data.

Never imports the room layer (service, client, refresh, participants, grants)
or ``core/pending``, and nothing outside the standard library
(``tests/test_architecture.py`` checks).
"""
