"""The ``roomsecrets`` command (also ``python -m roomsecrets``).

Commands, flags and environment variables are the ones SPEC.md pins ("The room
server, the remote client and the CLI")::

    roomsecrets serve [--host H] [--port P] [--store file:DIR | memory | aws:PREFIX]
                      [--public-url URL] [--disconnect-grace SECONDS]
    roomsecrets token mint --room R --participant-id ID [--name N] [--grant G] [--ttl S]
                           [--login-url [--server URL]]
    roomsecrets oauth2 list|delete|request|get|prompts|provide|reject --room R ...
    roomsecrets participant list --room R [--json]
    roomsecrets secret set|get|list|delete --room R ...
    roomsecrets demo [--data DIR] [--open]

Every client command takes ``--server`` (env ``ROOMSECRETS_SERVER``, default
``http://127.0.0.1:8700``) and ``--token`` (env ``ROOMSECRETS_TOKEN``), before or
after the subcommand. An error is one line on stderr and a non-zero exit status
(2 for a usage error), never a traceback. The only secret a command prints is the
one it exists to print (``token mint``: the JWT, or with ``--login-url`` the
approval page's sign-in URL that carries it; ``oauth2 request``/``get``: the
access token; ``secret get``: the secret's bytes).

This module imports only the standard library at load time: ``--help``, ``token
mint`` and ``demo``'s argument parsing never load aiohttp or boto3; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

from .adapters.server.signing_key import DEFAULT_STORE, JWT_KEY_ENV, StoreSpec
from .core.errors import InvalidInput, RoomSecretsError

if TYPE_CHECKING:
    from .adapters.remote import RemoteSecretsClient
    from .core.api import SecretInfo
    from .core.grants import SecretsGrant
    from .core.ports import SecretStore

__all__ = ["main"]

SERVER_ENV = "ROOMSECRETS_SERVER"
TOKEN_ENV = "ROOMSECRETS_TOKEN"
DEFAULT_SERVER = "http://127.0.0.1:8700"
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
    """A command line argparse refused (exit status 2)."""


class _Failure(Exception):
    """A command that ran and failed, with the one line to show (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the usage and exits; we want one line and our exit path.
        raise _UsageError(f"{self.prog}: {message}")


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
    room.add_argument("--room", required=True, help="the room (must be the token's room)")
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
        "--port", type=int, default=8700, help="port (default 8700; 0: a free one)"
    )
    _store_flag(serve)
    serve.add_argument(
        "--public-url",
        help="where browsers and providers reach the server (default http://HOST:PORT); "
        "the redirect URI is PUBLIC_URL/oauth/callback",
    )
    serve.add_argument(
        "--disconnect-grace",
        type=float,
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
        help="default | allow-all | a SecretsGrant as JSON | @FILE holding that JSON",
    )
    mint.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
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
    _store_flag(mint)
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
    request.set_defaults(run=_client_command(_oauth2_request))

    get = oauth2_commands.add_parser(
        "get", parents=common, help="print a stored access token without prompting"
    )
    get.add_argument("--delegated-by", required=True, help="the participant who approved it")
    _provider_flags(get)
    get.set_defaults(run=_client_command(_oauth2_get))

    prompts = oauth2_commands.add_parser(
        "prompts",
        parents=[*common, as_json],
        help="stay connected; print one line per prompt addressed to me",
    )
    prompts.set_defaults(run=_client_command(_oauth2_prompts))

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
    fetch.add_argument("--delegated-to", help=_DELEGATED_TO)
    fetch.set_defaults(run=_client_command(_secret_get))
    every = secret_commands.add_parser(
        "list", parents=[*common, as_json], help="all my secrets, OAuth credentials included"
    )
    every.set_defaults(run=_client_command(_secret_list))
    remove = secret_commands.add_parser("delete", parents=common, help="delete a secret")
    remove.add_argument("--id", required=True, help="the secret's id")
    remove.add_argument("--delegated-to", help=_DELEGATED_TO)
    remove.set_defaults(run=_client_command(_delete_secret), only_type=None)

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
    demo.set_defaults(run=_demo)
    return parser


def _store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help=f"file:DIR | memory | aws:PREFIX (default {DEFAULT_STORE}); the signing key is "
        f"{JWT_KEY_ENV}, else DIR/jwt.key",
    )


def _provider_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-id", required=True, help="the OAuth client id")
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
    except _UsageError as usage:
        _say(str(usage))
        return 2
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except _Failure as failure:
        _say(f"{_PROG}: {failure}")
    except RoomSecretsError as error:
        _say(f"{_PROG}: error: {_one_line(str(error)) or error.code} ({error.code})")
    except OSError as error:
        _say(f"{_PROG}: error: {_one_line(error.strerror or str(error))}")
    except Exception as error:
        # Not ours: say what kind, not its text, which we cannot vouch for.
        _say(f"{_PROG}: error: unexpected {type(error).__name__}")
    return 1


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
            f"this command needs {module}: pip install 'roomsecrets[{extra}]'"
        ) from None


# --- serve and token mint (the key holder's side) ------------------------------------------


def _store_spec(args: argparse.Namespace) -> StoreSpec:
    from .adapters.server.signing_key import parse_store_spec

    spec: StoreSpec = parse_store_spec(args.store)
    return spec


def _open_store(spec: StoreSpec) -> SecretStore:
    if spec.kind == "memory":
        from .core.memory_store import MemoryStore

        return MemoryStore()
    if spec.kind == "aws":
        _need("boto3", "aws")
        from .adapters.aws import SecretsManagerStore

        return SecretsManagerStore(prefix=spec.location or "roomsecrets")
    from .adapters.file import FileSecretStore

    return FileSecretStore(spec.location or ".")


def _serve(args: argparse.Namespace) -> int:
    from .adapters.server.signing_key import load_signing_key

    spec = _store_spec(args)
    key = load_signing_key(spec)
    _need("aiohttp", "aiohttp")
    _need("jwt", "aiohttp")
    store = _open_store(spec)
    asyncio.run(_serve_until_stopped(args, store, key, spec))
    return 0


async def _serve_until_stopped(
    args: argparse.Namespace, store: SecretStore, key: bytes, spec: StoreSpec
) -> None:
    import logging
    import signal

    from .adapters.server import create_app, start_server

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
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
            raise _Failure(f"cannot listen on {shown}: {exc.strerror or exc}") from None
        port = sock.getsockname()[1]
    public_url = (args.public_url or f"http://{shown}:{port}").rstrip("/")
    app = create_app(
        store=store,
        jwt_key=key,
        public_url=public_url,
        disconnect_grace=args.disconnect_grace,
        service_options={
            "max_secrets_per_participant": args.max_secrets,
            "max_secret_bytes_per_participant": args.max_secret_bytes,
        },
    )
    server = await start_server(app, host=host, port=port, sock=sock)
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
    try:
        await stop.wait()
    finally:
        await server.close()


def _token_mint(args: argparse.Namespace) -> int:
    from .adapters.server.signing_key import load_signing_key

    key = load_signing_key(_store_spec(args))
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
# The exit status of a command stopped by SIGTERM (128 + 15, as a shell reports it).
_TERMINATED = 143


def _cancel_on_sigterm() -> asyncio.Event:
    """On SIGTERM, cancel the running task (so its ``async with`` blocks close) and
    set the returned event. Where signal handlers cannot be set, nothing changes."""
    import signal

    terminated = asyncio.Event()
    task = asyncio.current_task()

    def stop() -> None:
        terminated.set()
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
    return terminated


def _client_command(work: _Work) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        server = _server_url(args)
        token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
        if not token:
            raise _Failure(f"no participant token: pass --token or set {TOKEN_ENV}")
        from .adapters.server.http_api import check_server_url

        allow_insecure_http = getattr(args, "allow_insecure_http", False)
        # Checked here too, so the error names the flag rather than the Python argument.
        check_server_url(server, allow_insecure_http=allow_insecure_http, what="--server")
        _need("aiohttp", "aiohttp")
        from .adapters.remote import RemoteSecretsClient

        async def with_client() -> int:
            terminated = _cancel_on_sigterm()
            try:
                async with RemoteSecretsClient(
                    server,
                    token=token,
                    room=args.room,
                    allow_insecure_http=allow_insecure_http,
                ) as client:
                    return await work(client, args)
            except asyncio.CancelledError:
                if not terminated.is_set():
                    raise
                # Closed cleanly on the way out: a normal WebSocket close makes the
                # participant leave at once; only a dropped connection gets the
                # server's grace period.
                return _TERMINATED

        return asyncio.run(with_client())

    return run


def _print_secrets(infos: list[SecretInfo], as_json: bool) -> None:
    if as_json:
        rows = [
            {"id": i.id, "type": i.type, "name": i.name, "delegated_to": i.delegated_to}
            for i in infos
        ]
        print(json.dumps(rows))
        return
    for info in infos:
        fields = (info.id, info.type, info.name or "-", info.delegated_to or "-")
        print("\t".join(fields))


async def _oauth2_list(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    infos = await client.list_user_secrets()
    _print_secrets([i for i in infos if i.type == "oauth_token"], args.json)
    return 0


async def _secret_list(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    _print_secrets(await client.list_user_secrets(), args.json)
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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    asking = asyncio.ensure_future(
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
        )
    )
    interactive = sys.stderr.isatty()
    every = 1.0 if interactive else 10.0
    wait = _FIRST_NOTICE
    shown = False
    try:
        while True:
            done, _ = await asyncio.wait({asking}, timeout=wait)
            if done:
                break
            left = max(0, round(deadline - loop.time()))
            notice = f"waiting for {args.from_participant_id} to approve ({left} s left)"
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
    print(asking.result())
    return 0


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
    )
    if token is None:
        raise _Failure(
            f"no usable token from {args.delegated_by} for client {args.client_id}: "
            f"request one with 'oauth2 request'"
        )
    print(token)
    return 0


async def _oauth2_prompts(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.connect()
    _say(f"{_PROG}: connected as {client.participant_id}; waiting for prompts (Ctrl-C stops)")
    callback = client.server_url + "/oauth/callback"
    async for prompt in client.oauth_prompts():
        # The agent chose where the provider sends the code; as the approval page
        # does, say so when that is not this server, before the person approves.
        elsewhere = prompt.redirect_uri != callback
        if args.json:
            shown: dict[str, Any] = {
                "request_id": prompt.request_id,
                "authorization_url": prompt.authorization_url,
                "from_participant_id": prompt.from_participant_id,
                "client_id": prompt.client_id,
                "scopes": list(prompt.scopes),
                "expires_at": prompt.expires_at,
            }
            if elsewhere:
                shown["redirect_uri"] = prompt.redirect_uri
            line = json.dumps(shown)
        else:
            scopes = " ".join(prompt.scopes) or "-"
            line = (
                f"{prompt.request_id}\tfrom {prompt.from_participant_id}\t"
                f"client {prompt.client_id}\tscopes {scopes}\t{prompt.authorization_url}"
            )
            if elsewhere:
                line += f"\tredirect {prompt.redirect_uri} (not this server)"
        print(line, flush=True)
    raise _Failure("the server closed the connection")


async def _oauth2_provide(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.provide_oauth_authorization(
        request_id=args.request_id, code=args.code, state=args.state, iss=args.iss
    )
    return 0


async def _oauth2_reject(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    await client.reject_oauth_authorization(request_id=args.request_id, error=args.error)
    return 0


async def _participant_list(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    found = await client.list_participants()
    if args.json:
        print(json.dumps([{"id": p.id, "name": p.name} for p in found]))
    else:
        for participant in found:
            print(f"{participant.id}\t{participant.name or '-'}")
    return 0


async def _secret_set(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    if args.value is not None:
        data = args.value.encode("utf-8")
    elif args.file is not None and args.file != "-":
        with open(args.file, "rb") as file:
            data = file.read()
    else:
        data = sys.stdin.buffer.read()
    await client.set_secret(
        secret_id=args.id,
        data=data,
        type=args.type,
        name=args.name,
        delegated_to=args.delegated_to,
    )
    return 0


async def _secret_get(client: RemoteSecretsClient, args: argparse.Namespace) -> int:
    data = await client.get_secret(secret_id=args.id, delegated_to=args.delegated_to)
    if data is None:
        raise _Failure(f"no secret {args.id!r}")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


# --- demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(data=args.data, by_hand=args.open)
