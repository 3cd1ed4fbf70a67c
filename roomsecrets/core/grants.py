"""Grants: what a participant may do with secrets, and the pure check against them.

A :class:`SecretsGrant` is data. It round-trips through :meth:`SecretsGrant.to_dict`
and :meth:`SecretsGrant.from_dict` (plain JSON types), so it can ride in a
participant token. The check functions take a grant and a request and return a
:class:`GrantDecision` with a specific, human-readable reason; they read no clock
and do no I/O. :func:`authorize` is the one step the service takes with a
decision: send it to the audit sink, then raise
:class:`~roomsecrets.core.errors.GrantDenied` if it is a denial. The check runs
before anything changes, so a denial changes nothing.

The pattern language (every field of an :class:`OAuthRule`; :func:`glob_match`)
----------------------------------------------------------------------------------
A pattern matches a whole value, case-sensitively. Two characters are special:

* ``*`` matches any run of characters, the empty run and ``/`` included;
* ``?`` matches exactly one character.

Every other character, ``[``, ``]``, ``!`` and ``\\`` included, matches only
itself, so an IPv6 literal such as ``https://[2001:db8::1]/token`` is matched
literally (with :mod:`fnmatch` its brackets would be a character class that
matches other hosts). There is no escape: a literal ``*`` or ``?`` cannot be
named (no client id, endpoint, scope or participant id needs one).

====================================  ==========================================
pattern                               matches / does not match
====================================  ==========================================
``*``                                 anything
``mail-app``                          ``mail-app`` only (not ``Mail-App``)
``mail.*``                            ``mail.read``, ``mail.`` / not ``mail``
``https://accounts.example.com/*``    every path on that host
``https://[2001:db8::1]/token``       that URL only / not ``https://2/token``
``agent-?``                           ``agent-1`` / not ``agent-10``
====================================  ==========================================

Because ``*`` crosses ``/``, a host wildcard is loose:
``https://*.example.com/*`` matches ``https://evil.test/x.example.com/`` too.
Name hosts exactly and put wildcards only in the path.

Reasons contain only participant ids, client ids, endpoints, scope names and
patterns, never a token, code or client secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from .audit import AuditEvent, AuditSink
from .errors import GrantDenied, InvalidInput
from .oauth.scopes import split_all
from .values import frozen_value

__all__ = [
    "GRANT_FORMAT_VERSION",
    "GrantDecision",
    "OAuthRule",
    "SecretRule",
    "SecretsGrant",
    "authorize",
    "check_answer_prompt",
    "check_manage_own_secrets",
    "check_oauth_request",
    "check_oauth_request_before_discovery",
    "check_secret_request",
    "decision_event",
    "glob_match",
]

#: The ``"version"`` written by :meth:`SecretsGrant.to_dict`; the only one read.
GRANT_FORMAT_VERSION = 1

#: Longest value quoted in a reason; longer ones are cut so reasons stay readable.
_MAX_QUOTED = 120

_RULE_PATTERNS = ("client_id", "issuer", "authorization_endpoint", "token_endpoint", "resource")
_RULE_LISTS = ("scopes", "participants")
#: The fields that name a provider and its client (what the broker discovers).
_PROVIDER_FIELDS = ("client_id", "issuer", "authorization_endpoint", "token_endpoint")
_RULE_KEYS = frozenset((*_RULE_PATTERNS, *_RULE_LISTS))
_SECRET_RULE_PATTERNS = ("url", "type")
_SECRET_RULE_KEYS = frozenset((*_SECRET_RULE_PATTERNS, "participants"))
_GRANT_FLAGS = ("manage_own_secrets", "answer_prompts")
_GRANT_KEYS = frozenset(("version", "oauth", "secret_requests", *_GRANT_FLAGS))


@frozen_value
class OAuthRule:
    """One kind of OAuth request a participant may make of others.

    Every field is a glob pattern (or a list of them) and a request must match
    every field. ``scopes``: every scope requested must match at least one
    pattern; ``None`` allows any scopes, ``()`` allows only requests naming no
    scope. ``participants``: the participant being asked (the one who approves,
    ``from_participant_id`` / ``delegated_by``) must match one pattern; ``None``
    allows anyone. Lists are stored as tuples.

    Raises :class:`~roomsecrets.core.errors.InvalidInput` naming the field when a
    pattern is not a non-empty string, or a list field is not a list of them.

    >>> rule = OAuthRule(client_id="mail-app", scopes=["mail.*"], participants=["alice"])
    >>> rule.scopes
    ('mail.*',)
    """

    client_id: str = "*"
    issuer: str = "*"
    authorization_endpoint: str = "*"
    token_endpoint: str = "*"
    #: The RFC 8707 resource (an MCP server's URL) the token is for. A rule naming
    #: only a resource allows whatever authorization server the resource's metadata
    #: names (RFC 9728); one naming a resource matches no request without one.
    resource: str = "*"
    # Typed as Sequence so a list type-checks; always stored as a tuple.
    scopes: Optional[Sequence[str]] = None
    participants: Optional[Sequence[str]] = None

    def __post_init__(self) -> None:
        for name in _RULE_PATTERNS:
            _check_pattern(getattr(self, name), f"OAuthRule.{name}")
        for name in _RULE_LISTS:
            object.__setattr__(self, name, _pattern_list(getattr(self, name), f"OAuthRule.{name}"))

    def to_dict(self) -> dict[str, Any]:
        """Return this rule as plain JSON types (lists for tuples)."""
        data: dict[str, Any] = {
            "client_id": self.client_id,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "scopes": None if self.scopes is None else list(self.scopes),
            "participants": None if self.participants is None else list(self.participants),
        }
        if self.issuer != "*":
            # Only when named: a grant without one still reads where "issuer" is unknown.
            data["issuer"] = self.issuer
        if self.resource != "*":
            data["resource"] = self.resource  # likewise
        return data

    @classmethod
    def from_dict(cls, data: object) -> OAuthRule:
        """Build a rule from :meth:`to_dict` output; missing keys take their defaults.

        Raises :class:`~roomsecrets.core.errors.InvalidInput` naming the field on
        an unknown key or a value of the wrong type.
        """
        return _rule_from_dict(data, "OAuthRule")


@frozen_value
class SecretRule:
    """One kind of secret a participant may ask others for (``request_secret``).

    ``url`` matches the URL the secret is for (an API's base URL, say) and
    ``type`` its MIME type; ``participants``: the participant being asked must
    match one pattern (``None`` allows anyone). Every field is a glob pattern, as
    in :class:`OAuthRule`, and a request must match every field.

    >>> SecretRule(url="https://api.example.com/*", participants=["alice"]).participants
    ('alice',)
    """

    url: str = "*"
    type: str = "*"
    # Typed as Sequence so a list type-checks; always stored as a tuple.
    participants: Optional[Sequence[str]] = None

    def __post_init__(self) -> None:
        for name in _SECRET_RULE_PATTERNS:
            _check_pattern(getattr(self, name), f"SecretRule.{name}")
        object.__setattr__(
            self, "participants", _pattern_list(self.participants, "SecretRule.participants")
        )

    def to_dict(self) -> dict[str, Any]:
        """Return this rule as plain JSON types (a list for the tuple)."""
        return {
            "url": self.url,
            "type": self.type,
            "participants": None if self.participants is None else list(self.participants),
        }

    @classmethod
    def from_dict(cls, data: object) -> SecretRule:
        """Build a rule from :meth:`to_dict` output; missing keys take their defaults."""
        return _secret_rule_from_dict(data, "SecretRule")


@frozen_value
class SecretsGrant:
    """What a participant may do with secrets in a room.

    The default grant allows managing one's own secrets and answering prompts
    addressed to oneself, and denies asking anyone for a token: add
    :class:`OAuthRule` entries to ``oauth`` to allow that, or use
    :meth:`allow_all`. ``oauth`` may be given as a list; it is stored as a tuple.

    >>> SecretsGrant(oauth=[OAuthRule(client_id="mail-app")]).oauth[0].client_id
    'mail-app'
    """

    #: OAuth requests this participant may make of others; the first match wins.
    #: Typed as Sequence so a list type-checks; always stored as a tuple.
    oauth: Sequence[OAuthRule] = ()
    #: Secrets this participant may ask others for (``request_secret``); the
    #: first match wins. A sequence stored as a tuple, like ``oauth``.
    secret_requests: Sequence[SecretRule] = ()
    #: May list, read, write and delete the participant's own secrets.
    manage_own_secrets: bool = True
    #: May provide or reject OAuth prompts addressed to the participant.
    answer_prompts: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.oauth, (str, bytes, Mapping)) or not isinstance(self.oauth, Iterable):
            raise InvalidInput("SecretsGrant.oauth must be a list of OAuthRule")
        rules = tuple(self.oauth)
        for index, rule in enumerate(rules):
            if not isinstance(rule, OAuthRule):
                raise InvalidInput(
                    f"SecretsGrant.oauth[{index}] must be an OAuthRule, got {type(rule).__name__}"
                )
        object.__setattr__(self, "oauth", rules)
        if isinstance(self.secret_requests, (str, bytes, Mapping)) or not isinstance(
            self.secret_requests, Iterable
        ):
            raise InvalidInput("SecretsGrant.secret_requests must be a list of SecretRule")
        secret_rules = tuple(self.secret_requests)
        for index, secret_rule in enumerate(secret_rules):
            if not isinstance(secret_rule, SecretRule):
                raise InvalidInput(
                    f"SecretsGrant.secret_requests[{index}] must be a SecretRule, "
                    f"got {type(secret_rule).__name__}"
                )
        object.__setattr__(self, "secret_requests", secret_rules)
        for name in _GRANT_FLAGS:
            _check_bool(getattr(self, name), f"SecretsGrant.{name}")

    @classmethod
    def allow_all(cls) -> SecretsGrant:
        """A grant that allows everything: any OAuth or secret request of anyone,
        both flags on."""
        return cls(
            oauth=(OAuthRule(),),
            secret_requests=(SecretRule(),),
            manage_own_secrets=True,
            answer_prompts=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return this grant as plain JSON types, with ``"version": 1``.

        ``"secret_requests"`` appears only when there are some, so a grant without
        them reads the same as before they existed.

        >>> SecretsGrant().to_dict()
        {'version': 1, 'oauth': [], 'manage_own_secrets': True, 'answer_prompts': True}
        """
        data: dict[str, Any] = {
            "version": GRANT_FORMAT_VERSION,
            "oauth": [rule.to_dict() for rule in self.oauth],
            "manage_own_secrets": self.manage_own_secrets,
            "answer_prompts": self.answer_prompts,
        }
        if self.secret_requests:
            data["secret_requests"] = [rule.to_dict() for rule in self.secret_requests]
        return data

    @classmethod
    def from_dict(cls, data: object) -> SecretsGrant:
        """Build a grant from :meth:`to_dict` output (e.g. after ``json.loads``).

        Missing keys take their defaults (a missing ``"version"`` means 1). Raises
        :class:`~roomsecrets.core.errors.InvalidInput` naming the field on an
        unknown key, a value of the wrong type, or a version other than 1.
        """
        fields = _mapping(data, "SecretsGrant", _GRANT_KEYS)
        version = fields.pop("version", GRANT_FORMAT_VERSION)
        if type(version) is not int or version != GRANT_FORMAT_VERSION:
            raise InvalidInput(
                f"SecretsGrant.version: unsupported grant format {_quote(version)}, "
                f"expected {GRANT_FORMAT_VERSION}"
            )
        if "oauth" in fields:
            rules = fields["oauth"]
            if not isinstance(rules, (list, tuple)):
                raise InvalidInput(f"SecretsGrant.oauth must be a list, got {type(rules).__name__}")
            fields["oauth"] = tuple(
                _rule_from_dict(rule, f"SecretsGrant.oauth[{index}]")
                for index, rule in enumerate(rules)
            )
        if "secret_requests" in fields:
            secret_rules = fields["secret_requests"]
            if not isinstance(secret_rules, (list, tuple)):
                raise InvalidInput(
                    "SecretsGrant.secret_requests must be a list, "
                    f"got {type(secret_rules).__name__}"
                )
            fields["secret_requests"] = tuple(
                _secret_rule_from_dict(rule, f"SecretsGrant.secret_requests[{index}]")
                for index, rule in enumerate(secret_rules)
            )
        return cls(**fields)


@frozen_value
class GrantDecision:
    """The outcome of a grant check: allowed or not, and exactly why.

    ``rule_index`` is the index of the :class:`OAuthRule` that allowed an OAuth
    request; None for denials and for checks that are not about OAuth rules.
    """

    allowed: bool
    #: Specific and human-readable, e.g. ``"allowed by oauth rule 1"``.
    reason: str
    rule_index: Optional[int] = None

    def __post_init__(self) -> None:
        _check_bool(self.allowed, "GrantDecision.allowed")
        if not isinstance(self.reason, str):
            raise InvalidInput("GrantDecision.reason must be a string")
        if self.rule_index is not None and (
            not self.allowed
            or isinstance(self.rule_index, bool)
            or not isinstance(self.rule_index, int)
        ):
            raise InvalidInput("GrantDecision.rule_index must be an int on an allowed decision")


def check_oauth_request(
    grant: SecretsGrant,
    *,
    target: str,
    client_id: str,
    authorization_endpoint: str,
    token_endpoint: str,
    scopes: Optional[Iterable[str]],
    issuer: Optional[str] = None,
    resource: Optional[str] = None,
    brokered: bool = False,
) -> GrantDecision:
    """May the holder of ``grant`` ask ``target`` for a token from this provider?

    ``brokered``: the request names only a resource, and the server discovers the
    provider and registers its own client (the MCP broker). A rule naming a
    resource and no provider (no client id, issuer or endpoint) allows only such
    requests; a rule naming a provider and no resource allows none of them.

    ``target`` is the participant being asked (``from_participant_id`` or
    ``delegated_by``). ``scopes`` is the requested scope list (None for none);
    each entry is split on whitespace and commas first (``core/oauth/scopes.py``),
    so ``["a,b"]`` is checked as the two scopes a provider would see. The first rule that
    matches every field allows the request; when none does, the reason says why
    each rule failed.

    Raises :class:`~roomsecrets.core.errors.InvalidInput` when an argument has
    the wrong type.

    >>> check_oauth_request(SecretsGrant(), target="alice", client_id="c",
    ...     authorization_endpoint="https://a/auth", token_endpoint="https://a/token",
    ...     scopes=None).reason
    'no oauth rule matches: the grant has no oauth rules'
    """
    _check_arg(client_id, "client_id")
    _check_arg(authorization_endpoint, "authorization_endpoint")
    _check_arg(token_endpoint, "token_endpoint")
    return _decide(
        grant,
        target=target,
        client_id=client_id,
        issuer=issuer,
        endpoints=(authorization_endpoint, token_endpoint),
        scopes=scopes,
        resource=resource,
        brokered=brokered,
    )


def check_oauth_request_before_discovery(
    grant: SecretsGrant,
    *,
    target: str,
    client_id: Optional[str],
    issuer: Optional[str],
    authorization_endpoint: Optional[str],
    token_endpoint: Optional[str],
    scopes: Optional[Iterable[str]],
    resource: Optional[str] = None,
    brokered: bool = False,
) -> GrantDecision:
    """Could any rule of ``grant`` allow this request once ``issuer``'s metadata names
    the endpoints left out (None)?

    With a ``resource`` (the MCP broker), ``issuer`` may be None too (the
    resource's metadata names it, RFC 9728) and so may ``client_id`` (the server
    registers its own, RFC 7591): None is a value not known yet, which every
    pattern may still match.

    Run before anything is fetched: a denial here means no metadata can make
    the request allowed, so the issuer is never asked (a denied caller must not
    be able to make the server send requests). An allowed decision is only a
    "maybe": the full :func:`check_oauth_request` decides once the endpoints are
    known.

    >>> rule = OAuthRule(issuer="https://accounts.example.com")
    >>> check_oauth_request_before_discovery(SecretsGrant(oauth=[rule]), target="alice",
    ...     client_id="c", issuer="http://127.0.0.1:22", authorization_endpoint=None,
    ...     token_endpoint=None, scopes=None).allowed
    False
    """
    if resource is None:
        _check_arg(issuer, "issuer")
    for value, name in ((authorization_endpoint, "authorization_endpoint"),
                        (token_endpoint, "token_endpoint")):
        if value is not None:
            _check_arg(value, name)
    return _decide(
        grant,
        target=target,
        client_id=client_id,
        issuer=issuer,
        endpoints=(authorization_endpoint, token_endpoint),
        scopes=scopes,
        resource=resource,
        unknown_issuer=resource is not None and issuer is None,
        brokered=brokered,
    )


def _decide(
    grant: SecretsGrant,
    *,
    target: str,
    client_id: Optional[str],
    issuer: Optional[str],
    endpoints: tuple[Optional[str], Optional[str]],
    scopes: Optional[Iterable[str]],
    resource: Optional[str] = None,
    unknown_issuer: bool = False,
    brokered: bool = False,
) -> GrantDecision:
    _check_arg(target, "target")
    if client_id is not None:
        _check_arg(client_id, "client_id")
    if issuer is not None:
        _check_arg(issuer, "issuer")
    if resource is not None:
        _check_arg(resource, "resource")
    tokens = _scope_tokens(scopes)
    if not grant.oauth:
        return GrantDecision(
            allowed=False, reason="no oauth rule matches: the grant has no oauth rules"
        )
    # None: not known yet (before discovery), so any pattern may still match it.
    values = (
        client_id,
        # No issuer: "" (none named) unless it is still to be learned (RFC 9728).
        None if unknown_issuer else ("" if issuer is None else issuer),
        *endpoints,
        "" if resource is None else resource,
    )
    failures = []
    for index, rule in enumerate(grant.oauth):
        why = _rule_mismatch(rule, target=target, values=values, scopes=tokens,
                             brokered=brokered)
        if why is None:
            return GrantDecision(
                allowed=True, reason=f"allowed by oauth rule {index}", rule_index=index
            )
        failures.append(f"rule {index} {why}")
    return GrantDecision(allowed=False, reason="no oauth rule matches: " + "; ".join(failures))


def check_secret_request(
    grant: SecretsGrant, *, target: str, url: str, type: str
) -> GrantDecision:
    """May the holder of ``grant`` ask ``target`` for a secret for ``url`` of MIME ``type``?

    The first :class:`SecretRule` that matches every field allows it; when none
    does, the reason says why each rule failed.

    >>> check_secret_request(SecretsGrant(), target="alice", url="https://api.x/",
    ...     type="text/plain").reason
    'no secret rule matches: the grant has no secret_requests rules'
    """
    _check_arg(target, "target")
    _check_arg(url, "url")
    _check_arg(type, "type")
    if not grant.secret_requests:
        return GrantDecision(
            allowed=False, reason="no secret rule matches: the grant has no secret_requests rules"
        )
    failures = []
    for index, rule in enumerate(grant.secret_requests):
        why = _secret_rule_mismatch(rule, target=target, url=url, type=type)
        if why is None:
            return GrantDecision(
                allowed=True, reason=f"allowed by secret rule {index}", rule_index=index
            )
        failures.append(f"rule {index} {why}")
    return GrantDecision(allowed=False, reason="no secret rule matches: " + "; ".join(failures))


def check_manage_own_secrets(grant: SecretsGrant) -> GrantDecision:
    """May the holder of ``grant`` list, read, write and delete its own secrets?"""
    if grant.manage_own_secrets:
        return GrantDecision(allowed=True, reason="the grant allows managing own secrets")
    return GrantDecision(allowed=False, reason="the grant does not allow managing own secrets")


def check_answer_prompt(grant: SecretsGrant) -> GrantDecision:
    """May the holder of ``grant`` provide or reject prompts addressed to it?"""
    if grant.answer_prompts:
        return GrantDecision(allowed=True, reason="the grant allows answering prompts")
    return GrantDecision(allowed=False, reason="the grant does not allow answering prompts")


def decision_event(
    decision: GrantDecision,
    *,
    action: str,
    room: str,
    actor: str,
    at: float,
    details: Iterable[tuple[str, str]] = (),
) -> AuditEvent:
    """Return the audit event for ``decision``: outcome ``"allowed"`` or ``"denied"``.

    A ``("rule_index", "<n>")`` detail is appended when a rule allowed it.
    """
    pairs = tuple(details)
    if decision.rule_index is not None:
        pairs += (("rule_index", str(decision.rule_index)),)
    return AuditEvent(
        action=action,
        room=room,
        actor=actor,
        outcome="allowed" if decision.allowed else "denied",
        reason=decision.reason,
        at=at,
        details=pairs,
    )


def authorize(
    decision: GrantDecision,
    *,
    sink: AuditSink,
    action: str,
    room: str,
    actor: str,
    at: float,
    details: Iterable[tuple[str, str]] = (),
) -> AuditEvent:
    """Send ``decision`` to ``sink``, then raise if it is a denial; return the event sent.

    Call it before changing anything. Raises
    :class:`~roomsecrets.core.errors.GrantDenied` (a ``PermissionError``) with
    the decision's reason when denied. An exception from ``sink`` propagates
    instead, so an operation whose audit could not be written does not proceed.
    """
    event = decision_event(decision, action=action, room=room, actor=actor, at=at, details=details)
    sink(event)
    if not decision.allowed:
        raise GrantDenied(decision.reason)
    return event


# --- helpers ------------------------------------------------------------------


def _quote(value: object) -> str:
    # repr escapes control characters; the cut keeps a hostile value from
    # flooding a reason (and so the audit log).
    text = repr(value)
    if len(text) > _MAX_QUOTED:
        text = text[: _MAX_QUOTED - 3] + "..."
    return text


def _quote_all(patterns: Sequence[str]) -> str:
    return "[" + ", ".join(_quote(pattern) for pattern in patterns) + "]"


def glob_match(value: str, pattern: str) -> bool:
    """True when ``pattern`` matches all of ``value`` (the pattern language above).

    Greedy with one backtrack point (the last ``*``), so it runs in
    O(len(value) * len(pattern)) at worst, whatever the pattern; no regex, so
    no pattern can make it backtrack exponentially.

    >>> glob_match("https://[2001:db8::1]/token", "https://[2001:db8::1]/*")
    True
    >>> glob_match("https://2/token", "https://[2001:db8::1]/token")
    False
    """
    v = p = 0
    star = -1  # index in pattern of the last '*' seen
    resume = 0  # where in value that '*' currently stops matching
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, v
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", value[v]):
            v += 1
            p += 1
        elif star >= 0:
            # Let the last '*' take one more character and try again from there.
            resume += 1
            v, p = resume, star + 1
        else:
            return False
    return pattern[p:].strip("*") == ""


def _matches_any(value: str, patterns: Sequence[str]) -> bool:
    return any(glob_match(value, pattern) for pattern in patterns)


def _check_pattern(value: object, where: str) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a glob pattern string, got {type(value).__name__}")
    if not value:
        raise InvalidInput(f"{where} must not be empty (use '*' to match anything)")


def _pattern_list(value: object, where: str) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    # A bare string is a classic slip (it would iterate as characters): refuse it.
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(
            f"{where} must be a list of glob patterns or None, got {type(value).__name__}"
        )
    for index, pattern in enumerate(value):
        _check_pattern(pattern, f"{where}[{index}]")
    return tuple(value)


def _check_bool(value: object, where: str) -> None:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where} must be true or false, got {type(value).__name__}")


def _check_arg(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")


def _scope_tokens(scopes: Optional[Iterable[str]]) -> tuple[str, ...]:
    if scopes is None:
        return ()
    if isinstance(scopes, (str, bytes)) or not isinstance(scopes, Iterable):
        raise InvalidInput("scopes must be a list of strings or None")
    entries = tuple(scopes)
    for scope in entries:
        if not isinstance(scope, str):
            raise InvalidInput(f"scopes must be strings, got {type(scope).__name__}")
    # Split as the provider splits (core/oauth/scopes.py): "a,b" is two scopes there.
    return split_all(entries)


def _mapping(data: object, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be an object, got {type(data).__name__}")
    fields = dict(data)
    for key in fields:
        if not isinstance(key, str):
            raise InvalidInput(f"{where}: keys must be strings, got {_quote(key)}")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key {_quote(unknown[0])} (allowed: {', '.join(sorted(allowed))})"
        )
    return fields


def _rule_from_dict(data: object, where: str) -> OAuthRule:
    fields = _mapping(data, where, _RULE_KEYS)
    # Check here too, so messages name the path in the grant ("oauth[2].scopes").
    for name in _RULE_PATTERNS:
        if name in fields:
            _check_pattern(fields[name], f"{where}.{name}")
    for name in _RULE_LISTS:
        if name in fields:
            _pattern_list(fields[name], f"{where}.{name}")
    return OAuthRule(**fields)


def _rule_mismatch(
    rule: OAuthRule,
    *,
    target: str,
    values: tuple[Optional[str], ...],
    scopes: tuple[str, ...],
    brokered: bool = False,
) -> Optional[str]:
    """Return the first field of ``rule`` the request fails, as a phrase; None if it matches.

    ``values`` are the request's values of ``_RULE_PATTERNS``, in order; None is
    a value not known yet, which every pattern may match.
    """
    names_provider = any(getattr(rule, name) != "*" for name in _PROVIDER_FIELDS)
    if brokered and rule.resource == "*" and names_provider:
        # Its provider can only be learned by fetching what the agent names: such a
        # rule never lets an agent make the server fetch anything.
        return "names a provider and no resource: it allows no brokered request"
    if not brokered and rule.resource != "*" and not names_provider:
        # Else the agent could name any provider and client beside an allowed resource.
        return "names only a resource: it allows only brokered requests (no client_id)"
    for name, value in zip(_RULE_PATTERNS, values):
        pattern: str = getattr(rule, name)
        if value is not None and not glob_match(value, pattern):
            if name in ("issuer", "resource") and not value:
                return f"{name}: the request names none, and the rule needs {_quote(pattern)}"
            return f"{name} {_quote(value)} does not match {_quote(pattern)}"
    if rule.scopes is not None:
        for scope in scopes:
            if not _matches_any(scope, rule.scopes):
                return f"scope {_quote(scope)} matches none of {_quote_all(rule.scopes)}"
    if rule.participants is not None and not _matches_any(target, rule.participants):
        return f"participant {_quote(target)} matches none of {_quote_all(rule.participants)}"
    return None


def _secret_rule_from_dict(data: object, where: str) -> SecretRule:
    fields = _mapping(data, where, _SECRET_RULE_KEYS)
    for name in _SECRET_RULE_PATTERNS:
        if name in fields:
            _check_pattern(fields[name], f"{where}.{name}")
    if "participants" in fields:
        _pattern_list(fields["participants"], f"{where}.participants")
    return SecretRule(**fields)


def _secret_rule_mismatch(rule: SecretRule, *, target: str, url: str, type: str) -> Optional[str]:
    """The first field of ``rule`` the secret request fails, as a phrase; None if it matches."""
    for name, value in (("url", url), ("type", type)):
        pattern: str = getattr(rule, name)
        if not glob_match(value, pattern):
            return f"{name} {_quote(value)} does not match {_quote(pattern)}"
    if rule.participants is not None and not _matches_any(target, rule.participants):
        return f"participant {_quote(target)} matches none of {_quote_all(rule.participants)}"
    return None
