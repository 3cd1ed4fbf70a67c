"""The ``roomsecrets`` command (also ``python -m roomsecrets``); docs/cli.md has every
command and option::

    roomsecrets serve [--host H] [--port P] [--store file:DIR | memory | aws:PREFIX]
                      [--public-url URL] [--disconnect-grace SECONDS]
    roomsecrets dev-provider [--host H] [--port P] --client-id ID --redirect-uri URL ...
    roomsecrets token mint --room R --participant-id ID [--name N] [--grant G] [--ttl S]
                           [--login-url [--server URL]]
    roomsecrets oauth2 list|delete|request|get|prompts|provide|reject [--room R] ...
    roomsecrets participant list [--room R] [--json]
    roomsecrets secret set|get|list|delete [--room R] ...
    roomsecrets demo [--data DIR] [--open] [--host H] [--port P]

Every client command takes ``--server`` (env ``ROOMSECRETS_SERVER``, default
``http://127.0.0.1:8700``) and ``--token`` (env ``ROOMSECRETS_TOKEN``), before or
after the subcommand; the room is the token's unless ``--room`` names it. Every
failure is one line on stderr, ``roomsecrets: error: MESSAGE (code)``, and a non-zero
exit status (2 for a usage error), never a traceback. The only secret a command
prints is the one it exists to print (``token mint``: the JWT, or with
``--login-url`` the approval page's sign-in URL that carries it; ``oauth2
request``/``get``: the access token; ``secret get``: the secret's bytes).

This module imports only the standard library at load time: ``--help``, ``token
mint`` and ``demo``'s argument parsing never load aiohttp or boto3; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional, TypeVar, Union

from .adapters.server.signing_key import DEFAULT_STORE, JWT_KEY_ENV, StoreSpec
from .core.errors import InvalidInput, RoomSecretsError

if TYPE_CHECKING:
    from .adapters.remote import RemoteSecretsClient
    from .core.api import OAuthPrompt, Prompt, SecretInfo, SecretPrompt
    from .core.grants import SecretsGrant
    from .core.ports import SecretStore

__all__ = ["main"]

_T = TypeVar("_T")

SERVER_ENV = "ROOMSECRETS_SERVER"
TOKEN_ENV = "ROOMSECRETS_TOKEN"
DEFAULT_SERVER = "http://127.0.0.1:8700"
#: ``dev-provider --port`` when none is given: next to the server's 8700.
DEFAULT_PROVIDER_PORT = 8710
#: ``dev-provider --user`` when none is given.
DEFAULT_PROVIDER_USER = "person@example.test"
_PROG = "roomsecrets"
_DELEGATED_TO = "the participant it is delegated to, when it is"
_INSECURE_HTTP_HELP = (
    "let the participant token cross the network over plain http to a server that is "
    "not loopback (refused by default: RFC 6750 §5.3)"
)
# How long ``oauth2 request`` waits before saying it is waiting: a token that is
# already stored comes back at once, with no prompt to wait for.
_FIRST_NOTICE = 0.3


class _UsageError(Exception):
    """A command line that cannot run as given (exit status 2)."""


class _Failure(Exception):
    """A command that ran and failed: the one line to show and its code (exit status 1)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the usage and exits; we want one line and our exit path.
        # "oauth2 delete: the following arguments are required: --id"
        command = self.prog[len(_PROG) :].strip()
        raise _UsageError(f"{command}: {message}" if command else message)


# --- the command line ------------------------------------------------------------------


def _build_parser() -> _Parser:
    client = _Parser(add_help=False)
    # SUPPRESS: a flag after the subcommand must not erase the same flag given before it.
    client.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help=f"room server URL (env {SERVER_ENV}, default {DEFAULT_SERVER})",
    )
    client.add_argument(
        "--token", default=argparse.SUPPRESS, help=f"participant token (env {TOKEN_ENV})"
    )
    client.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=argparse.SUPPRESS,
        help=_INSECURE_HTTP_HELP,
    )
    room = _Parser(add_help=False)
    room.add_argument(
        "--room", help="the room (default: the token's room; when given, it must be the token's)"
    )
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    parser = _Parser(
        prog=_PROG,
        description="Let agents in a room get a person's OAuth tokens safely.",
        parents=[client],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    # serve
    serve = commands.add_parser("serve", help="run the room server")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8700, help="port (default 8700; 0: a free one)"
    )
    _store_flag(serve, key="created on first use")
    serve.add_argument(
        "--public-url",
        help="where browsers and providers reach the server (default http://HOST:PORT); "
        "the redirect URI is PUBLIC_URL/oauth/callback",
    )
    serve.add_argument(
        "--node-url",
        metavar="URL",
        help="cluster mode: where the other nodes on this store reach this node; a "
        "callback or an answer for a request another node holds is forwarded there "
        "(docs/scaling.md)",
    )
    serve.add_argument(
        "--node-timeout",
        type=float,
        default=45.0,
        metavar="SECONDS",
        help="cluster mode: how long a call forwarded to another node may take (default 45)",
    )
    serve.add_argument(
        "--node-id",
        metavar="ID",
        help="this node's id in cluster mode (a-z, 0-9, '-'; default: derived from "
        "--node-url)",
    )
    serve.add_argument(
        "--disconnect-grace",
        type=_grace_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a participant whose WebSocket dropped stays connected, so a page "
        "reload does not cancel its prompts (default 30; 0: none)",
    )
    serve.add_argument(
        "--max-secrets",
        type=_positive_int,
        default=256,
        metavar="N",
        help="most secrets (OAuth credentials included) one participant may own per room "
        "(default 256)",
    )
    serve.add_argument(
        "--max-secret-bytes",
        type=_positive_int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="most bytes of secret data one participant may own per room (default 16 MiB)",
    )
    serve.set_defaults(run=_serve)

    # dev-provider
    provider = commands.add_parser(
        "dev-provider",
        help="run the development OAuth provider (roomsecrets.testing.OAuthProvider)",
        description="Run the strict development OAuth provider until Ctrl-C. It approves "
        "every authorization as --user. --client-id starts a client: the --redirect-uri, "
        "--client-secret and --client-auth-method after it (before the next --client-id) "
        "are that client's; those before the first --client-id are the first client's.",
    )
    provider.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    provider.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PROVIDER_PORT,
        help=f"port (default {DEFAULT_PROVIDER_PORT}; 0: a free one); the issuer is "
        "http://HOST:PORT",
    )
    provider.add_argument(
        "--client-id",
        action=_ClientPart,
        required=True,
        help="register a client (may repeat: each starts a new client)",
    )
    provider.add_argument(
        "--redirect-uri",
        action=_ClientPart,
        required=True,
        help="a redirect URI of the client (may repeat; matched exactly), e.g. the room "
        "server's PUBLIC_URL/oauth/callback",
    )
    provider.add_argument(
        "--client-secret",
        action=_ClientPart,
        help="the client's secret (none: a public client); every client must use PKCE",
    )
    provider.add_argument(
        "--client-auth-method",
        action=_ClientPart,
        choices=("client_secret_basic", "client_secret_post"),
        help="how the client sends --client-secret (default client_secret_basic)",
    )
    provider.add_argument(
        "--access-token-ttl",
        type=_positive_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime of the access tokens it issues (default 3600)",
    )
    provider.add_argument(
        "--user",
        default=DEFAULT_PROVIDER_USER,
        help=f"who approves every authorization (default {DEFAULT_PROVIDER_USER}); "
        "/userinfo names this user",
    )
    provider.set_defaults(run=_dev_provider, client_parts=[])

    # token mint
    token = commands.add_parser("token", help="participant tokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND")
    token_commands.required = True
    mint = token_commands.add_parser(
        "mint", help="print a participant token (a JWT) signed with the server's key"
    )
    mint.add_argument("--room", required=True, help="the room the token is for")
    mint.add_argument("--participant-id", required=True, help="the participant (sub)")
    mint.add_argument("--name", help="display name shown to those it asks")
    mint.add_argument(
        "--grant",
        default="default",
        help="default | allow-all | a SecretsGrant as JSON | @FILE holding that JSON "
        "(docs/grants.md)",
    )
    mint.add_argument(
        "--ttl", type=_positive_seconds, default=3600.0, help="seconds (default 3600)"
    )
    mint.add_argument(
        "--login-url",
        action="store_true",
        help="print instead the URL that opens the approval page signed in as this "
        "participant (the token rides in the URL fragment, which no server or "
        "Referer sees)",
    )
    mint.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help=f"with --login-url: the server's public URL (env {SERVER_ENV}, "
        f"default {DEFAULT_SERVER})",
    )
    mint.add_argument("--allow-insecure-http", action="store_true", help=_INSECURE_HTTP_HELP)
    _store_flag(mint, key="read, never created: serve creates it")
    mint.set_defaults(run=_token_mint)

    # oauth2
    oauth2 = commands.add_parser("oauth2", help="OAuth tokens and prompts")
    oauth2_commands = oauth2.add_subparsers(dest="oauth2_command", metavar="COMMAND")
    oauth2_commands.required = True
    common = [client, room]

    listing = oauth2_commands.add_parser(
        "list", parents=[*common, as_json], help="my OAuth credentials"
    )
    listing.set_defaults(run=_client_command(_oauth2_list))

    delete = oauth2_commands.add_parser("delete", parents=common, help="delete my credential")
    delete.add_argument("--id", required=True, help="the credential's id")
    delete.add_argument("--delegated-to", help=_DELEGATED_TO)
    delete.set_defaults(run=_client_command(_delete_secret), only_type="oauth_token")

    request = oauth2_commands.add_parser(
        "request",
        parents=common,
        help="ask a participant for an access token; print it",
    )
    request.add_argument(
        "--from-participant-id", required=True, help="whom to ask (a connected participant)"
    )
    _provider_flags(request)
    request.add_argument(
        "--redirect-uri", help="default: the server's PUBLIC_URL/oauth/callback"
    )
    request.add_argument(
        "--no-pkce", action="store_true", help="leave out PKCE (RFC 7636); avoid it"
    )
    request.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    request.add_argument(
        "--delegate-to",
        metavar="P",
        help="store the credential delegated to P (an agent I act for) instead of me; "
        "the person is then asked every time",
    )
    request.set_defaults(run=_client_command(_oauth2_request))

    get = oauth2_commands.add_parser(
        "get", parents=common, help="print a stored access token without prompting"
    )
    get.add_argument("--delegated-by", required=True, help="the participant who approved it")
    get.add_argument(
        "--delegated-to",
        metavar="P",
        help="the credential delegated to P (default: me); only its owner may name another",
    )
    _provider_flags(get)
    get.set_defaults(run=_client_command(_oauth2_get))

    prompts = oauth2_commands.add_parser(
        "prompts",
        parents=[*common, as_json],
        help="stay connected; print one line per prompt addressed to me",
    )
    # Ctrl-C leaves as a closed browser tab does: see _leave_after_grace.
    prompts.set_defaults(
        run=_client_command(_oauth2_prompts), keeps_prompts=True, prompts_shown=set()
    )

    provide = oauth2_commands.add_parser(
        "provide", parents=common, help="answer a prompt with an authorization code"
    )
    provide.add_argument("--request-id", required=True, help="the prompt's request id")
    provide.add_argument("--code", required=True, help="the redirect's code")
    provide.add_argument("--state", help="the redirect's state (checked when given)")
    provide.add_argument("--iss", help="the redirect's iss parameter (RFC 9207), if it has one")
    provide.set_defaults(run=_client_command(_oauth2_provide))

    reject = oauth2_commands.add_parser("reject", parents=common, help="refuse a prompt")
    reject.add_argument("--request-id", required=True, help="the prompt's request id")
    reject.add_argument(
        "--error",
        default="user_cancelled",
        help="the error the asker gets (default user_cancelled)",
    )
    reject.set_defaults(run=_client_command(_oauth2_reject))

    # participant list
    participant = commands.add_parser("participant", help="the room's participants")
    participant_commands = participant.add_subparsers(
        dest="participant_command", metavar="COMMAND"
    )
    participant_commands.required = True
    participants = participant_commands.add_parser(
        "list", parents=[*common, as_json], help="the connected participants"
    )
    participants.set_defaults(run=_client_command(_participant_list))

    # secret
    secret = commands.add_parser("secret", help="my generic secrets")
    secret_commands = secret.add_subparsers(dest="secret_command", metavar="COMMAND")
    secret_commands.required = True
    put = secret_commands.add_parser("set", parents=common, help="store a secret")
    put.add_argument("--id", required=True, help="the secret's id")
    source = put.add_mutually_exclusive_group()
    source.add_argument("--value", help="the secret as text (else --file, else stdin)")
    source.add_argument("--file", help="read the secret from FILE ('-': stdin)")
    put.add_argument("--type", default="application/octet-stream", help="a MIME type")
    put.add_argument("--name", help="a display name")
    put.add_argument("--delegated-to", help="store it delegated to this participant")
    put.set_defaults(run=_client_command(_secret_set))
    fetch = secret_commands.add_parser("get", parents=common, help="print a secret's bytes")
    fetch.add_argument("--id", required=True, help="the secret's id")
    whose = fetch.add_mutually_exclusive_group()
    whose.add_argument("--delegated-to", help=_DELEGATED_TO)
    whose.add_argument(
        "--delegated-by",
        metavar="OWNER",
        help="read the secret OWNER stored and delegated to me (secret set --delegated-to ME)",
    )
    fetch.set_defaults(run=_client_command(_secret_get))
    every = secret_commands.add_parser(
        "list",
        parents=[*common, as_json],
        help="all my secrets, OAuth credentials included, and those delegated to me",
    )
    every.set_defaults(run=_client_command(_secret_list))
    remove = secret_commands.add_parser("delete", parents=common, help="delete a secret")
    remove.add_argument("--id", required=True, help="the secret's id")
    remove.add_argument("--delegated-to", help=_DELEGATED_TO)
    remove.set_defaults(run=_client_command(_delete_secret), only_type=None)
    ask = secret_commands.add_parser(
        "request",
        parents=common,
        help="ask a participant to type in a secret for a URL; print its bytes",
    )
    ask.add_argument(
        "--from-participant-id", required=True, metavar="P", help="whom to ask (connected)"
    )
    ask.add_argument("--url", required=True, help="what the secret is for (an API's URL)")
    ask.add_argument("--type", default="text/plain", help="its MIME type (default text/plain)")
    ask.add_argument(
        "--delegate-to", metavar="P", help="delegate the stored secret to P (default: me)"
    )
    ask.add_argument(
        "--timeout", type=float, default=300.0, help="seconds (default 300)"
    )
    ask.set_defaults(run=_client_command(_secret_request))
    answer = secret_commands.add_parser(
        "provide", parents=common, help="answer a secret prompt with the secret"
    )
    answer.add_argument("--request-id", required=True, help="the prompt's request id")
    given = answer.add_mutually_exclusive_group()
    given.add_argument("--value", help="the secret as text (else --file, else stdin)")
    given.add_argument("--file", help="read the secret from FILE ('-': stdin)")
    answer.set_defaults(run=_client_command(_secret_provide))
    refuse = secret_commands.add_parser("reject", parents=common, help="refuse a secret prompt")
    refuse.add_argument("--request-id", required=True, help="the prompt's request id")
    refuse.add_argument(
        "--error",
        default="user_cancelled",
        help="the error the asker gets (default user_cancelled)",
    )
    refuse.set_defaults(run=_client_command(_secret_reject))

    # prompts (both kinds)
    every_prompt = commands.add_parser(
        "prompts",
        parents=[*common, as_json],
        help="stay connected; print one line per prompt addressed to me, OAuth or secret",
    )
    every_prompt.set_defaults(
        run=_client_command(_all_prompts), keeps_prompts=True, prompts_shown=set()
    )

    # demo
    demo = commands.add_parser(
        "demo", help="the whole flow, offline, in one command (server, provider, agent, person)"
    )
    demo.add_argument("--data", help="file store folder (default: a temporary folder)")
    demo.add_argument(
        "--open",
        action="store_true",
        help="be the person yourself: print the approval page's sign-in URL, then wait "
        "for you to open it in your browser and approve",
    )
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address both servers listen on (default 127.0.0.1); from another "
        "machine, forward the ports over SSH: --open prints the ssh -L line",
    )
    demo.add_argument(
        "--port",
        type=_port,
        default=0,
        help="the room server's port; the development provider takes PORT+10, as serve "
        "and dev-provider do by default (8700, 8710) (default 0: free ones)",
    )
    demo.set_defaults(run=_demo)
    return parser


def _store_flag(parser: argparse.ArgumentParser, *, key: str) -> None:
    parser.add_argument(
        "--store",
        type=_store_spec,
        default=DEFAULT_STORE,
        help=f"file:DIR | memory | aws:PREFIX (default {DEFAULT_STORE}); the signing key is "
        f"{JWT_KEY_ENV}, else DIR/jwt.key ({key})",
    )


def _store_spec(text: str) -> StoreSpec:
    """An argparse type: a ``--store`` value."""
    from .adapters.server.signing_key import parse_store_spec

    try:
        spec: StoreSpec = parse_store_spec(text)
    except InvalidInput as bad:
        # argparse says "argument --store: " itself.
        raise argparse.ArgumentTypeError(str(bad).replace("--store ", "", 1)) from None
    return spec


def _provider_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client-id", help="the OAuth client id (required unless --resource is given)"
    )
    parser.add_argument(
        "--resource",
        metavar="URL",
        help="the MCP server (protected resource) the token is for; without --client-id "
        "the server discovers the provider and registers its own client (docs/mcp.md)",
    )
    parser.add_argument(
        "--issuer",
        help="the provider's issuer: endpoints left out come from its metadata (RFC 8414)",
    )
    parser.add_argument("--authorization-endpoint", help="required unless --issuer is given")
    parser.add_argument("--token-endpoint", help="required unless --issuer is given")
    parser.add_argument(
        "--scopes",
        action="append",
        metavar="S",
        help="may repeat; each value may hold several scopes separated by spaces or commas",
    )
    parser.add_argument(
        "--client-secret", help="the client's secret (none: a public client)"
    )
    parser.add_argument(
        "--client-auth-method",
        choices=("client_secret_basic", "client_secret_post"),
        help="how --client-secret is sent (RFC 6749 §2.3.1), as the client is registered; "
        "default: the stored credential's, else client_secret_basic unless the issuer's "
        "metadata lists only client_secret_post",
    )


class _ClientPart(argparse.Action):
    """``dev-provider``'s client options, kept in command-line order, so that each
    ``--redirect-uri``, ``--client-secret`` and ``--client-auth-method`` goes to the
    ``--client-id`` before it (:func:`_provider_clients`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Union[str, Sequence[Any], None],
        option_string: Optional[str] = None,
    ) -> None:
        # A new list each time: the default one is shared by every parse.
        parts = [*getattr(namespace, "client_parts", []), (self.dest, str(values))]
        namespace.client_parts = parts


# --- running it ---------------------------------------------------------------------------


#: Options whose values are random (``secrets.token_urlsafe``, a provider's code):
#: such a value may start with '-', which argparse would read as another option.
_RANDOM_VALUED = frozenset({"--request-id", "--code", "--state", "--iss"})


def _join_random_values(argv: Sequence[str]) -> list[str]:
    """``--code -abc`` becomes ``--code=-abc``, so a random value is never mistaken
    for an option (``--code=-abc`` works as it is)."""
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            joined.append(word)
            joined.extend(words)
            break
        if word in _RANDOM_VALUED:
            value = next(words, None)
            joined.append(word if value is None else f"{word}={value}")
        else:
            joined.append(word)
    return joined


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    words = sys.argv[1:] if argv is None else argv
    try:
        args = _build_parser().parse_args(_join_random_values(words))
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except KeyboardInterrupt:
        return _INTERRUPTED
    except _UsageError as usage:
        _fail(str(usage), "usage_error")
        return 2
    except _Failure as failure:
        _fail(str(failure), failure.code)
    except RoomSecretsError as error:
        _fail(str(error) or error.code, error.code)
    except OSError as error:
        if error.filename is not None:
            # The file named, as the shell's own tools do: "FILE: No such file or directory".
            _fail(f"{error.filename}: {error.strerror or type(error).__name__}", "file_error")
        else:
            _fail(error.strerror or type(error).__name__, "os_error")
    except Exception as error:
        # Not ours: say what kind, not its text, which we cannot vouch for.
        _fail(f"unexpected {type(error).__name__}", "internal_error")
    return 1


def _fail(message: str, code: str) -> None:
    """The one line every failure prints: ``roomsecrets: error: MESSAGE (code)``."""
    _say(f"{_PROG}: error: {_one_line(message)} ({code})")


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 0 to 65535 (0: a free one)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _grace_seconds(text: str) -> float:
    """An argparse type: ``serve --disconnect-grace``, 0 to 3600 seconds."""
    value = _seconds(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 3600 seconds")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _scopes(values: Optional[list[str]]) -> Optional[list[str]]:
    if values is None:
        return None
    found: dict[str, None] = {}
    for value in values:
        for scope in re.split(r"[\s,]+", value):
            if scope:
                found[scope] = None
    return list(found)


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise _Failure(
            f"this command needs {module}: pip install 'roomsecrets[{extra}]'",
            "missing_dependency",
        ) from None


def _os_reason(error: OSError) -> str:
    """Why a system call failed, in the system's words ("Address already in use")."""
    # asyncio rewords a bind error, quoting the address; the errno alone says it.
    if isinstance(error.errno, int) and error.errno > 0:  # a name lookup's errno is < 0
        return os.strerror(error.errno)
    return error.strerror or str(error) or type(error).__name__


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- serve and token mint (the key holder's side) ------------------------------------------


def _open_store(spec: StoreSpec) -> SecretStore:
    if spec.kind == "memory":
        from .core.memory_store import MemoryStore

        return MemoryStore()
    if spec.kind == "aws":
        _need("boto3", "aws")
        from .adapters.aws import SecretsManagerStore

        store = SecretsManagerStore(prefix=spec.location or "roomsecrets")
        _check_aws_store(store, spec)
        return store
    from .adapters.file import FileSecretStore

    return FileSecretStore(spec.location or ".")


#: What a Secrets Manager failure at start means, by the botocore error it names.
_AWS_HINTS = (
    ("NoRegionError", "no AWS region: set AWS_DEFAULT_REGION (or a region in ~/.aws/config)"),
    (
        "NoCredentialsError",
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
        "AWS_PROFILE, or run where an instance or task role provides them",
    ),
    ("UnrecognizedClient", "AWS does not know these credentials"),
    ("InvalidClientTokenId", "AWS does not know these credentials"),
    ("ExpiredToken", "the AWS credentials have expired"),
    ("AccessDenied", "these AWS credentials may not list secrets (secretsmanager:ListSecrets)"),
    ("EndpointConnectionError", "AWS Secrets Manager cannot be reached"),
)


def _check_aws_store(store: Any, spec: StoreSpec) -> None:
    """One cheap Secrets Manager call (a filtered ListSecrets) now, so a missing region
    or bad credentials stop ``serve`` at start rather than fail its first request."""
    from .core.errors import StoreError

    try:
        asyncio.run(store.list("roomsecrets-start-check", "nobody"))
    except StoreError as error:
        text = str(error)
        hint = next((said for name, said in _AWS_HINTS if name in text), None)
        detail = f"{hint} ({text})" if hint else text
        raise _Failure(
            f"--store aws:{spec.location}: AWS Secrets Manager cannot be used: {detail}",
            error.code,
        ) from None


def _serve(args: argparse.Namespace) -> int:
    from .adapters.server.signing_key import key_file_path, load_signing_key

    spec: StoreSpec = args.store
    key = load_signing_key(spec)
    key_file = key_file_path(spec)
    _need("aiohttp", "aiohttp")
    _need("jwt", "aiohttp")
    store = _open_store(spec)
    if key_file is None:
        key_said = f"signing key from {JWT_KEY_ENV}"
    else:
        key_said = (
            f"signing key {os.path.abspath(key_file)} "
            f"(token mint --store file:{spec.location} signs with it)"
        )
    asyncio.run(_serve_until_stopped(args, store, key, spec, key_said))
    return 0


async def _serve_until_stopped(
    args: argparse.Namespace, store: SecretStore, key: bytes, spec: StoreSpec, key_said: str
) -> None:
    import signal

    from .adapters.server import create_app, start_server
    from .adapters.server.access_log import StreamAccessLog
    from .adapters.server.log_format import configure_server_logging

    log_handler = configure_server_logging()
    host = args.host
    shown = f"[{host}]" if ":" in host else host
    sock = None
    port = args.port
    if port == 0 and not args.public_url:
        # --port 0: the redirect URI must name the port the system picks, so bind first.
        import socket

        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
        except OSError as exc:
            sock.close()
            raise _Failure(
                f"cannot listen on {_host_port(host, 0)}: {_os_reason(exc)}", "listen_failed"
            ) from None
        port = sock.getsockname()[1]
    public_url = (args.public_url or f"http://{shown}:{port}").rstrip("/")
    cluster = None
    if args.node_url or args.node_id:
        from .adapters.server.cluster import ClusterNode

        if not args.node_url:
            raise _UsageError("serve: --node-id needs --node-url (cluster mode)")
        import hashlib

        node_id = args.node_id or "n" + hashlib.sha256(args.node_url.encode()).hexdigest()[:8]
        try:
            cluster = ClusterNode(
                node_id=node_id, node_url=args.node_url, jwt_key=key, store=store,
                timeout=args.node_timeout,
            )
        except InvalidInput as bad:
            raise _UsageError(f"serve: {bad}") from None
    try:
        app = create_app(
            store=store,
            jwt_key=key,
            public_url=public_url,
            disconnect_grace=args.disconnect_grace,
            service_options={
                "max_secrets_per_participant": args.max_secrets,
                "max_secret_bytes_per_participant": args.max_secret_bytes,
            },
            cluster=cluster,
            access_log=StreamAccessLog(log_handler),
        )
    except InvalidInput as bad:
        if sock is not None:
            sock.close()
        if args.public_url and "public_url" in str(bad):
            # A flag the person typed: name it as they typed it.
            raise _UsageError(f"serve: {str(bad).replace('public_url', '--public-url')}") from None
        raise
    try:
        server = await start_server(app, host=host, port=port, sock=sock)
    except OSError as exc:
        raise _Failure(
            f"cannot listen on {_host_port(host, port)}: {_os_reason(exc)}", "listen_failed"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows' proactor loop: there Ctrl-C raises KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    where = spec.kind if spec.location is None else f"{spec.kind}:{spec.location}"
    _say(
        f"{_PROG}: serving on {server.url} (store {where}; "
        f"redirect URI {public_url}/oauth/callback; approval page {public_url}/approve); "
        "Ctrl-C stops"
    )
    _say(f"{_PROG}: {key_said}")
    if cluster is not None:
        _say(f"{_PROG}: cluster mode: node {cluster.node_id} at {cluster.node_url}")
    try:
        await stop.wait()
    finally:
        await server.close()


def _token_mint(args: argparse.Namespace) -> int:
    from .adapters.server.signing_key import load_signing_key

    # Read only: a key made up here would sign tokens no server accepts.
    key = load_signing_key(args.store, create=False)
    grant = _grant(args.grant)
    _need("jwt", "aiohttp")
    from .adapters.server.participant_tokens import mint_participant_token

    token = mint_participant_token(
        key,
        room=args.room,
        participant_id=args.participant_id,
        name=args.name,
        grant=grant,
        ttl=args.ttl,
    )
    if args.login_url:
        from .adapters.server.approval import login_url
        from .adapters.server.http_api import check_server_url

        # The page would send the token over its WebSocket: the same rule as a client.
        server = check_server_url(
            _server_url(args), allow_insecure_http=args.allow_insecure_http, what="--server"
        )
        print(login_url(server, token))
    else:
        print(token)
    return 0


# --- dev-provider -------------------------------------------------------------------------


def _provider_clients(parts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Group ``dev-provider``'s client options: each ``--redirect-uri``,
    ``--client-secret`` and ``--client-auth-method`` belongs to the ``--client-id``
    before it; those before the first ``--client-id`` belong to the first client.
    Raises _UsageError for a client without a redirect URI, a repeated client id,
    secret or method, or a method without a secret."""
    clients: list[dict[str, Any]] = []
    early: list[tuple[str, str]] = []

    def give(client: dict[str, Any], dest: str, value: str) -> None:
        flag = "--" + dest.replace("_", "-")
        if dest == "redirect_uri":
            client["redirect_uris"].append(value)
        elif client[dest] is not None:
            raise _UsageError(
                f"dev-provider: {flag} is given twice for client {client['client_id']}"
            )
        else:
            client[dest] = value

    for dest, value in parts:
        if dest != "client_id":
            if clients:
                give(clients[-1], dest, value)
            else:
                early.append((dest, value))
            continue
        if any(client["client_id"] == value for client in clients):
            raise _UsageError(f"dev-provider: --client-id {value} is given twice")
        clients.append(
            {"client_id": value, "redirect_uris": [], "client_secret": None,
             "client_auth_method": None}
        )
        if len(clients) == 1:
            for early_dest, early_value in early:
                give(clients[0], early_dest, early_value)
    for client in clients:
        if not client["redirect_uris"]:
            raise _UsageError(
                f"dev-provider: client {client['client_id']} has no --redirect-uri "
                "(give its --redirect-uri after its --client-id)"
            )
        if client["client_auth_method"] is not None and client["client_secret"] is None:
            raise _UsageError(
                f"dev-provider: --client-auth-method without --client-secret for client "
                f"{client['client_id']}"
            )
    return clients


def _dev_provider(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .dev_provider import OAuthProvider

    clients = _provider_clients(args.client_parts)
    try:
        provider = OAuthProvider(
            user=args.user,
            access_token_lifetime=args.access_token_ttl,
            host=args.host,
            port=args.port,
        )
    except ValueError as bad:
        raise _UsageError(f"dev-provider: {bad}") from None
    for client in clients:
        secret = client["client_secret"]
        try:
            provider.register_client(
                client["client_id"],
                client_secret=secret,
                auth_method=client["client_auth_method"]
                or ("none" if secret is None else "client_secret_basic"),
                redirect_uris=client["redirect_uris"],
            )
        except ValueError as bad:
            uris = " ".join(client["redirect_uris"])
            raise _UsageError(
                f"dev-provider: client {client['client_id']} (--redirect-uri {uris}): {bad}"
            ) from None
    stop = threading.Event()

    def stop_serving(signum: int, frame: object) -> None:
        stop.set()

    # Before start(): a SIGTERM that comes early still ends in a clean exit.
    previous = {
        signum: signal.signal(signum, stop_serving) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            provider.start()
        except OSError as exc:
            raise _Failure(
                f"cannot listen on {_host_port(args.host, args.port)}: {_os_reason(exc)}",
                "listen_failed",
            ) from None
        for line in _provider_lines(provider, clients):
            _say(line)
        # A timeout, so the wait returns to Python (and its signal handlers) now and then.
        while not stop.wait(1.0):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        provider.close()
    return 0


def _provider_lines(provider: Any, clients: list[dict[str, Any]]) -> list[str]:
    """What ``dev-provider`` says on stderr when it starts: serving, then one line per
    endpoint (RFC 8414 names) and per client. Never a client secret."""
    lines = [
        f"{_PROG}: dev-provider serving on {provider.base_url}; it approves every "
        f"authorization as {provider.user}; Ctrl-C stops",
        f"  issuer                  {provider.issuer}",
        f"  metadata                {provider.issuer}/.well-known/oauth-authorization-server",
        f"  authorization_endpoint  {provider.authorization_endpoint}",
        f"  token_endpoint          {provider.token_endpoint}",
        f"  revocation_endpoint     {provider.revocation_endpoint}",
        f"  userinfo_endpoint       {provider.userinfo_endpoint}",
    ]
    for client in clients:
        kind = (
            "public"
            if client["client_secret"] is None
            else f"confidential, {client['client_auth_method'] or 'client_secret_basic'}"
        )
        uris = client["redirect_uris"]
        lines.append(
            f"  client {client['client_id']}: {kind}, PKCE S256 required; "
            f"redirect URI{'s' if len(uris) > 1 else ''} {' '.join(uris)}"
        )
    return lines


def _server_url(args: argparse.Namespace) -> str:
    found: str = getattr(args, "server", None) or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    return found


def _grant(text: str) -> SecretsGrant:
    from .core.grants import SecretsGrant

    if text == "default":
        return SecretsGrant()
    if text == "allow-all":
        return SecretsGrant.allow_all()
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as file:
            text = file.read()
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidInput(
            "--grant must be default, allow-all, a JSON grant or @FILE"
        ) from None
    return SecretsGrant.from_dict(data)


# --- client commands --------------------------------------------------------------------


_Work = Callable[["RemoteSecretsClient", argparse.Namespace], Awaitable[int]]
# The exit statuses of a command stopped by SIGINT and SIGTERM (128 + the signal's
# number, as a shell reports them).
_INTERRUPTED = 130
_TERMINATED = 143


class _StopSignal:
    """Which stop signal (SIGINT or SIGTERM) cancelled a client command, if any."""

    def __init__(self) -> None:
        self.received: Optional[int] = None


def _cancel_on_stop_signals() -> _StopSignal:
    """On SIGINT or SIGTERM, cancel the running task (so the command closes its
    connections on the way out) and remember which signal came. Where signal
    handlers cannot be set, nothing changes (Ctrl-C raises KeyboardInterrupt)."""
    import signal

    stopping = _StopSignal()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if stopping.received is None and task is not None:
            stopping.received = signum
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signum, stop, signum)
    return stopping


def _client_command(work: _Work) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        server = _server_url(args)
        token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
        if not token:
            raise _UsageError(f"no participant token: pass --token or set {TOKEN_ENV}")
        from .adapters.server.http_api import check_server_url

        allow_insecure_http = getattr(args, "allow_insecure_http", False)
        # Checked here too, so the error names the flag rather than the Python argument.
        check_server_url(server, allow_insecure_http=allow_insecure_http, what="--server")
        _need("aiohttp", "aiohttp")
        from .adapters.remote import RemoteSecretsClient

        async def with_client() -> int:
            import signal

            stopping = _cancel_on_stop_signals()
            # room=None: the token's room; a --room that is not the token's is refused.
            client = RemoteSecretsClient(
                server, token=token, room=args.room, allow_insecure_http=allow_insecure_http
            )
            try:
                return await work(client, args)
            except asyncio.CancelledError:
                if stopping.received is None:
                    raise
                if stopping.received == signal.SIGINT and getattr(args, "keeps_prompts", False):
                    await _leave_after_grace(client, shown=args.prompts_shown)
                    return _INTERRUPTED
                # A normal WebSocket close (below): the participant leaves at once.
                return _INTERRUPTED if stopping.received == signal.SIGINT else _TERMINATED
            finally:
                await client.close()

        try:
            return asyncio.run(with_client())
        except RoomSecretsError as error:
            raise _Failure(_explained(error, server), error.code) from None

    return run


async def _leave_after_grace(client: RemoteSecretsClient, *, shown: set[str]) -> None:
    """Close the WebSocket as a browser tab that goes away does (1001), so the server
    keeps the participant, and the prompts already shown, for its disconnect grace
    period: the person can still approve them, or run ``oauth2 prompts`` again.
    (A normal close, 1000, would end them at once.)"""
    if shown:
        _say(
            f"{_PROG}: stopped; prompts still open stay open for the server's "
            "--disconnect-grace (30 s unless set): open their URL, or run oauth2 prompts "
            "again to see them"
        )
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await client.close(going_away=True)


#: Our own calls to the room server name their route (``GET /rooms/r/secrets: ...``);
#: the server's calls to a provider, which come back as the same errors, name a host.
_OWN_CALL = re.compile(r"[A-Z]+ /rooms/")


def _explained(error: RoomSecretsError, server: str) -> str:
    """The one line for a client command's error: the error's message, with what to
    do about it where the CLI knows (the server's address, the key, the grant)."""
    from .core.errors import ConnectError, TransportError

    text = str(error) or error.code
    if isinstance(error, TransportError) and _OWN_CALL.match(text):
        where = _server_host_port(server)
        reason = text.split(": ", 1)[-1]
        if isinstance(error, ConnectError):
            return f"cannot reach the room server at {where}: {reason}"
        return f"the room server at {where}: {reason}"
    if error.code == "invalid_token" and "signature" in text:
        return (
            f"{text}: it was signed with another key than the server's; mint the token "
            "with the server's key: run 'roomsecrets token mint' where the server runs, "
            f"with the server's --store file:DIR or its {JWT_KEY_ENV}"
        )
    if error.code == "grant_denied":
        return f"{text}; mint the token with a --grant that allows it: see docs/grants.md"
    return text


def _server_host_port(server: str) -> str:
    import urllib.parse

    parts = urllib.parse.urlsplit(server)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _host_port(parts.hostname or "", port)


def _print_secrets(
    infos: list[SecretInfo], as_json: bool, empty: str, *, with_owner: bool = False
) -> None:
    """One line (or JSON object) per secret; ``with_owner`` adds ``delegated_by``
    (``secret list``; ``oauth2 list`` keeps the four fields it always had)."""
    if not infos:
        # Silence would look like a failure, or like a command still running.
        _say(empty)
    if as_json:
        rows = []
        for i in infos:
            row = {"id": i.id, "type": i.type, "name": i.name, "delegated_to": i.delegated_to}
            if with_owner:
                row["delegated_by"] = i.delegated_by
            rows.append(row)
        print(json.dumps(rows))
        return
    for info in infos:
        fields = [info.id, info.type, info.name or "-", info.delegated_to or "-"]
        if with_owner:
            fields.append(info.delegated_by or "-")
        print("\t".join(fields))


async def _oauth2_list(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    infos = await client.list_user_secrets()
    _print_secrets(
        [i for i in infos if i.type == "oauth_token"], args.json, "no OAuth credentials"
    )
    return 0


async def _secret_list(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    # Mine first, then what others delegated to me: a delegate sees it without
    # having to know the owner's name.
    infos = await client.list_user_secrets() + await client.list_delegated_secrets()
    _print_secrets(infos, args.json, "no secrets", with_owner=True)
    return 0


async def _delete_secret(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    # oauth2 delete deletes OAuth credentials only; secret delete, any of my secrets.
    deleted = await client.delete_secret(
        id=args.id, delegated_to=args.delegated_to, type=args.only_type
    )
    _say(f"deleted {deleted.id!r}" + (
        f" (delegated to {deleted.delegated_to})" if deleted.delegated_to else ""
    ) + _REVOCATION_SAYS[deleted.revocation].format(host=deleted.host, error=deleted.error))
    return 0


#: What happened at the provider, as the delete's line on stderr ends.
_REVOCATION_SAYS = {
    "revoked": "; revoked at {host}",
    "failed": "; revocation at {host} failed ({error}): the provider may honour the token "
    "until it expires",
    "not_published": "; {host} publishes no revocation endpoint: the provider may honour "
    "the token until it expires",
    "not_oauth": "",
}


async def _oauth2_request(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    token = await _waiting_for(
        args,
        client.request_oauth_token(
            client_id=args.client_id,
            authorization_endpoint=args.authorization_endpoint,
            token_endpoint=args.token_endpoint,
            from_participant_id=args.from_participant_id,
            redirect_uri=args.redirect_uri,
            client_secret=args.client_secret,
            scopes=_scopes(args.scopes),
            timeout=args.timeout,
            no_pkce=args.no_pkce,
            client_auth_method=args.client_auth_method,
            issuer=args.issuer,
            delegate_to=args.delegate_to,
            resource=args.resource,
        ),
        "approve",
    )
    print(token)
    return 0


async def _secret_request(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    data = await _waiting_for(
        args,
        client.request_secret(
            url=args.url,
            type=args.type,
            from_participant_id=args.from_participant_id,
            timeout=args.timeout,
            delegate_to=args.delegate_to,
        ),
        "type in the secret",
    )
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


async def _waiting_for(args: argparse.Namespace, asked: Awaitable[_T], what: str) -> _T:
    """Await ``asked``, saying on stderr who we wait for while a prompt is open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    asking = asyncio.ensure_future(asked)
    interactive = _redraws(sys.stderr)
    every = 1.0 if interactive else 10.0
    wait = _FIRST_NOTICE
    shown = False
    try:
        while True:
            done, _ = await asyncio.wait({asking}, timeout=wait)
            if done:
                break
            left = max(0, round(deadline - loop.time()))
            notice = f"waiting for {args.from_participant_id} to {what} ({left} s left)"
            if interactive:
                sys.stderr.write("\r" + notice + "\033[K")
                sys.stderr.flush()
            else:
                _say(notice)
            shown = True
            wait = every
    finally:
        if shown and interactive:
            sys.stderr.write("\n")
        if not asking.done():
            asking.cancel()
    return asking.result()


def _redraws(stream: Any) -> bool:
    """True when ``stream`` is a terminal this process has in the foreground, where a
    line may be redrawn in place. A job in the background of a shell shares the
    terminal with whatever runs in front: it prints whole lines instead of redrawing
    the line someone is typing on."""
    if not stream.isatty():
        return False
    try:
        return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
    except (OSError, AttributeError):  # not our controlling terminal; no job control (Windows)
        return True


async def _oauth2_get(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    token = await client.get_offline_oauth_token(
        client_id=args.client_id,
        authorization_endpoint=args.authorization_endpoint,
        token_endpoint=args.token_endpoint,
        client_secret=args.client_secret,
        scopes=_scopes(args.scopes),
        delegated_by=args.delegated_by,
        client_auth_method=args.client_auth_method,
        issuer=args.issuer,
        delegated_to=args.delegated_to,
        resource=args.resource,
    )
    if token is None:
        what = f"client {args.client_id}" if args.client_id else f"resource {args.resource}"
        raise _Failure(
            f"no usable token from {args.delegated_by} for {what}: "
            f"request one with 'oauth2 request'",
            "no_credential",
        )
    print(token)
    return 0


async def _oauth2_prompts(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    return await _show_prompts(client, args, client.oauth_prompts(), kinds=False)


async def _all_prompts(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    return await _show_prompts(client, args, client.prompts(), kinds=True)


async def _show_prompts(
    client: RemoteSecretsClient,
    args: argparse.Namespace,
    prompts: AsyncIterator[Prompt],
    *,
    kinds: bool,
) -> int:
    """Print one line per prompt until the server closes; ``kinds`` adds each JSON
    line's ``"kind"`` (``prompts`` shows both kinds; ``oauth2 prompts`` only OAuth)."""
    from .core.api import SecretPrompt
    # An HTTP call first: a refused WebSocket handshake says only "401", while an
    # HTTP answer says why (expired, another room, signed with another key).
    await client.list_participants()
    await client.connect()
    _say(f"{_PROG}: connected as {client.participant_id}; waiting for prompts (Ctrl-C stops)")
    callback = client.server_url + "/oauth/callback"
    async for prompt in prompts:
        if isinstance(prompt, SecretPrompt):
            line = _secret_prompt_line(prompt, args.json)
        else:
            line = _oauth_prompt_line(prompt, args.json, callback, kinds=kinds)
        print(line, flush=True)
        args.prompts_shown.add(prompt.request_id)
    raise _Failure("the server closed the connection", "connection_closed")


def _oauth_prompt_line(prompt: OAuthPrompt, as_json: bool, callback: str, *, kinds: bool) -> str:
    # The agent chose where the provider sends the code; as the approval page
    # does, say so when that is not this server, before the person approves.
    elsewhere = prompt.redirect_uri != callback
    # Who gets the credential, when it is not the agent asking: the person must know.
    delegate = prompt.delegate_to
    other = delegate is not None and delegate != prompt.from_participant_id
    if as_json:
        shown: dict[str, Any] = {"kind": "oauth"} if kinds else {}
        shown.update(
            request_id=prompt.request_id,
            authorization_url=prompt.authorization_url,
            from_participant_id=prompt.from_participant_id,
            client_id=prompt.client_id,
            scopes=list(prompt.scopes),
            expires_at=prompt.expires_at,
        )
        if prompt.resource is not None:
            shown.update(resource=prompt.resource, resource_name=prompt.resource_name,
                         brokered=prompt.brokered)
        if elsewhere:
            shown["redirect_uri"] = prompt.redirect_uri
        if other:
            shown["delegate_to"] = delegate
        return json.dumps(shown)
    scopes = " ".join(prompt.scopes) or "-"
    if prompt.resource is not None and prompt.brokered:
        # An MCP server through the broker: the server the agent will call, by
        # name and host, and who authorizes it; the client id is the server's own.
        name = f"{prompt.resource_name} " if prompt.resource_name else ""
        line = (
            f"{prompt.request_id}\tfrom {prompt.from_participant_id}\t"
            f"MCP server {name}({_host(prompt.resource)})\t"
            f"authorization server {_host(prompt.authorization_url)}\t"
            f"scopes {scopes}\t{prompt.authorization_url}"
        )
    else:
        line = (
            f"{prompt.request_id}\tfrom {prompt.from_participant_id}\t"
            f"client {prompt.client_id}\tscopes {scopes}\t{prompt.authorization_url}"
        )
    if other:
        line += f"\tdelegated to {delegate}"
    if elsewhere:
        line += f"\tredirect {prompt.redirect_uri} (not this server)"
    return line


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def _secret_prompt_line(prompt: SecretPrompt, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "kind": "secret",
                "request_id": prompt.request_id,
                "from_participant_id": prompt.from_participant_id,
                "url": prompt.url,
                "type": prompt.type,
                "delegate_to": prompt.delegate_to,
                "expires_at": prompt.expires_at,
            }
        )
    return (
        f"{prompt.request_id}\tfrom {prompt.from_participant_id}\tsecret for {prompt.url}\t"
        f"type {prompt.type}\tdelegated to {prompt.delegate_to}"
    )


async def _oauth2_provide(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.provide_oauth_authorization(
        request_id=args.request_id, code=args.code, state=args.state, iss=args.iss
    )
    return 0


async def _oauth2_reject(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.reject_oauth_authorization(request_id=args.request_id, error=args.error)
    return 0


async def _secret_provide(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.provide_secret(request_id=args.request_id, data=_value_of(args))
    return 0


async def _secret_reject(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.reject_secret(request_id=args.request_id, error=args.error)
    return 0


async def _participant_list(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    found = await client.list_participants()
    if not found:
        _say("no participants connected")
    if args.json:
        print(json.dumps([{"id": p.id, "name": p.name} for p in found]))
    else:
        for participant in found:
            print(f"{participant.id}\t{participant.name or '-'}")
    return 0


def _value_of(args: argparse.Namespace) -> bytes:
    """The secret from ``--value``, else ``--file``, else stdin."""
    if args.value is not None:
        return bytes(args.value.encode("utf-8"))
    if args.file is not None and args.file != "-":
        with open(args.file, "rb") as file:
            return file.read()
    return sys.stdin.buffer.read()


async def _secret_set(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.set_secret(
        secret_id=args.id,
        data=_value_of(args),
        type=args.type,
        name=args.name,
        delegated_to=args.delegated_to,
    )
    return 0


async def _secret_get(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    data = await client.get_secret(
        secret_id=args.id, delegated_to=args.delegated_to, delegated_by=args.delegated_by
    )
    if data is None:
        if args.delegated_by is not None:
            raise _Failure(
                f"no secret {args.id!r} that {args.delegated_by} delegated to you",
                "secret_not_found",
            )
        to = args.delegated_to or "nobody"
        mine = [s for s in await client.list_user_secrets() if s.id == args.id]
        hint = "".join(
            f"; you have one delegated to {s.delegated_to} (--delegated-to {s.delegated_to})"
            for s in mine[:3]
            if s.delegated_to is not None and s.delegated_to != args.delegated_to
        )
        raise _Failure(f"no secret {args.id!r} delegated to {to}{hint}", "secret_not_found")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


# --- demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(data=args.data, by_hand=args.open, host=args.host, port=args.port)
