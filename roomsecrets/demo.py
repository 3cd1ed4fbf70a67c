"""``roomsecrets demo``: the whole flow on this machine, offline, in one command.

It starts, all in this process on 127.0.0.1: the room server on a file store (a
temporary folder, or ``--data DIR``), the development OAuth provider
(:class:`roomsecrets.dev_provider.OAuthProvider`), an agent and a simulated person,
both :class:`~roomsecrets.adapters.remote.RemoteSecretsClient` s talking to the
server over HTTP and WebSocket. Then it walks the flow, printing each step with
its timing and checking that it did what it says:

1. the agent requests the person's token;
2. the prompt reaches the person over the WebSocket;
3. the person approves at the provider;
4. the provider redirects to ``/oauth/callback``, which completes the request;
5. the agent gets the token (and the provider accepts it);
6. an offline fetch, with the person gone: no prompt, no token POST;
7. the token expires (the server's clock moves an hour on) and 50 concurrent
   offline fetches share one refresh: 1 POST;
8. the person deletes the credential; an offline fetch then returns none.

The exit status is 0 only if every step checked out. No secret value is printed:
the demo checks its own output against every secret the provider issued or
received, the signing key and the participant tokens.

``roomsecrets demo --open`` lets you be the person: it prints the approval
page's sign-in URL for alice (her token rides in the URL fragment: the one
secret this mode prints, on purpose) and waits for you to open it in your own
browser. Steps 2 to 4 are then yours: the prompt appears on the page, Approve
opens the development provider in a new tab, which approves at once (it has no
password form) and redirects to ``/oauth/callback``. The demo never starts a
browser itself: a URL on a command line would show the token to every local
user's ``ps``.

``--host H --port P`` (for a demo on a machine you reach over SSH): the room
server listens on ``H:P`` and the development provider on ``H:P+10`` (as
``serve`` and ``dev-provider`` do by default: 8700 and 8710), and ``--open``
prints the ``ssh -L`` line that forwards both to your machine. ``H`` is a
loopback address: the demo's URLs are plain http, which OAuth allows only on
loopback (RFC 8252 §7.3), so another machine reaches them through the forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Any, Optional, TextIO, TypeVar

from .adapters.server.signing_key import StoreSpec, load_signing_key
from .core.errors import InvalidInput
from .core.oauth.endpoints import is_loopback_host
from .dev_provider import OAuthProvider, authorization_redirect, browser_get

if TYPE_CHECKING:
    from .adapters.remote import RemoteSecretsClient

__all__ = ["run_demo"]

ROOM = "demo-room"
AGENT = "agent-1"
PERSON = "alice"
CLIENT_ID = "demo-mail"
SCOPES = ("mail.read", "mail.send")
CONCURRENT_CALLERS = 50
# No step should take longer than this on any machine; a hang is a failure.
_STEP_TIMEOUT = 20.0
#: How long ``--open`` waits for the person to open the page, then to approve.
BY_HAND_TIMEOUT = 600.0
#: With ``--port P``, the development provider listens on ``P + PROVIDER_PORT_OFFSET``:
#: 8700 and 8710, like ``serve`` and ``dev-provider``, so one SSH forwarding serves both.
PROVIDER_PORT_OFFSET = 10

T = TypeVar("T")


class StepFailed(Exception):
    """A step did not do what it says."""


class _DemoClock:
    """The server's clock: real time plus an offset the demo moves (step 7)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


class _Output:
    """Prints lines and keeps them, to check afterwards that none holds a secret."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)
        print(text, file=self.stream, flush=True)


def run_demo(
    *,
    data: Optional[str] = None,
    out: Optional[TextIO] = None,
    by_hand: bool = False,
    by_hand_timeout: float = BY_HAND_TIMEOUT,
    host: str = "127.0.0.1",
    port: int = 0,
) -> int:
    """Run the demo; return 0 if every step did what it says, else 1.

    ``by_hand``: a person approves in their own browser on the approval page
    (its sign-in URL is printed), not the simulated one; each wait for them
    gives up after ``by_hand_timeout`` seconds.

    ``host``: the loopback address both servers listen on (``127.0.0.1``, ``::1``,
    ``localhost``). ``port``: the room server's; the development provider takes
    ``port + PROVIDER_PORT_OFFSET``; 0 (default): free ones for both.

    Raises :class:`~roomsecrets.core.errors.InvalidInput` for a host that is not
    loopback or a port out of range, and :class:`OSError` naming ``host:port``
    when a server cannot listen there.
    """
    _check_address(host, port)
    stream = sys.stdout if out is None else out
    try:
        import aiohttp  # noqa: F401 - only to give a clear message
        import jwt  # noqa: F401
    except ImportError:
        print(
            "roomsecrets demo: needs the room server: pip install 'roomsecrets[aiohttp]'",
            file=sys.stderr,
        )
        return 1
    with contextlib.ExitStack() as stack:
        folder = data if data is not None else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="roomsecrets-demo-")
        )
        hand = by_hand_timeout if by_hand else None
        return asyncio.run(_walk(folder, _Output(stream), hand, host, port))
    return 1  # pragma: no cover - the with block always returns


def _check_address(host: object, port: object) -> None:
    if not isinstance(host, str) or not is_loopback_host(host):
        raise InvalidInput(
            f"demo --host must be a loopback address such as 127.0.0.1 or ::1, got {host!r}: "
            "OAuth allows its plain-http URLs only on loopback; from another machine, "
            "forward the ports over SSH (ssh -L)"
        )
    highest = 65535 - PROVIDER_PORT_OFFSET
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= highest:
        raise InvalidInput(
            f"demo --port must be 0 (free ones) or a port up to {highest} (the provider "
            f"takes port + {PROVIDER_PORT_OFFSET}), got {port!r}"
        )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _cannot_listen(error: OSError, what: str, host: str, port: int) -> OSError:
    """``error`` saying where: the CLI prints an OSError's ``strerror`` alone."""
    reason = error.strerror or type(error).__name__
    return OSError(error.errno, f"the {what} cannot listen on {_url_host(host)}:{port} ({reason})")


@contextlib.contextmanager
def _provider_on(provider: OAuthProvider, port: int) -> Iterator[OAuthProvider]:
    try:
        provider.start()
    except OSError as error:
        raise _cannot_listen(error, "development OAuth provider", provider.host, port) from None
    try:
        yield provider
    finally:
        provider.close()


async def _within(awaitable: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, _STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise StepFailed(f"{what} took more than {_STEP_TIMEOUT:.0f} s") from None


def _check(condition: bool, failure: str) -> None:
    if not condition:
        raise StepFailed(failure)


def _host_port(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


@contextlib.asynccontextmanager
async def _room_server(
    folder: str, clock: _DemoClock, key: bytes, host: str, port: int
) -> AsyncIterator[tuple[str, object]]:
    from .adapters.file import FileSecretStore
    from .adapters.server import create_app, start_server

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if port:
            # As every server does: a port in TIME_WAIT from the last run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise _cannot_listen(error, "room server", host, port) from None
    url = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
    # The store and the service share the clock, so leases and expiry agree.
    store = FileSecretStore(folder, clock=clock)
    app = create_app(
        store=store, jwt_key=key, public_url=url, service_options={"clock": clock}
    )
    server = await start_server(app, sock=sock, shutdown_timeout=1.0)
    try:
        yield server.url, store
    finally:
        await server.close()


async def _walk(
    folder: str,
    out: _Output,
    by_hand: Optional[float] = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> int:
    from .adapters.remote import RemoteSecretsClient
    from .adapters.server.participant_tokens import mint_participant_token
    from .core.grants import OAuthRule, SecretsGrant

    started = time.perf_counter()
    secrets_seen: set[str] = set()
    lock = threading.Lock()

    def remember(value: str) -> None:
        with lock:
            secrets_seen.add(value)

    clock = _DemoClock()
    key = load_signing_key(StoreSpec(kind="file", location=folder))
    provider_port = port + PROVIDER_PORT_OFFSET if port else 0
    with _provider_on(
        OAuthProvider(
            on_secret=remember, user="alice@example.test", host=host, port=provider_port
        ),
        provider_port,
    ) as provider:
        async with _room_server(folder, clock, key, host, port) as (url, _store):
            callback = url + "/oauth/callback"
            provider.register_client(CLIENT_ID, redirect_uris=[callback], scopes=SCOPES)
            # The agent may ask alice, and only alice, for this client's scopes.
            agent_grant = SecretsGrant(
                oauth=[OAuthRule(client_id=CLIENT_ID, scopes=list(SCOPES), participants=[PERSON])]
            )
            agent_token = mint_participant_token(
                key, room=ROOM, participant_id=AGENT, name="mailbot", grant=agent_grant, ttl=600
            )
            person_token = mint_participant_token(
                key, room=ROOM, participant_id=PERSON, name="Alice", ttl=600
            )
            secrets_seen.update({key.decode("ascii", "replace"), agent_token})
            if by_hand is None:
                # By hand, alice's sign-in URL is printed on purpose: her token is the
                # one secret that mode exists to print.
                secrets_seen.add(person_token)
            out.line(f"roomsecrets demo: everything on {host}, nothing leaves this machine")
            out.line(f"  room server      {url}  (room {ROOM!r}, file store {folder})")
            out.line(f"  OAuth provider   {provider.base_url}  (development provider, PKCE S256)")
            out.line(f"  agent            {AGENT} (may ask {PERSON} for {CLIENT_ID})")
            if by_hand is None:
                out.line(f"  person           {PERSON} (connected over the WebSocket)")
            else:
                from .adapters.server.approval import login_url

                out.line(
                    "  over SSH         forward both ports from your machine first: "
                    + _ssh_forwarding(url, provider.base_url)
                )
                out.line(f"  person           you, as {PERSON}: open this in your browser:")
                out.line(f"  {login_url(url, person_token)}")
            agent = RemoteSecretsClient(url, token=agent_token, room=ROOM)
            person = RemoteSecretsClient(url, token=person_token, room=ROOM)
            try:
                ok = await _steps(
                    out, provider, url, clock, agent, person, person_token, by_hand
                )
            finally:
                await agent.close()
                await person.close()
    leaked = [line for line in out.lines if any(s in line for s in secrets_seen)]
    if ok and leaked:
        out.line("FAILED: a secret value appeared in the output above")
        ok = False
    total = (time.perf_counter() - started) * 1000
    if ok:
        out.line(
            f"all {_step_count(by_hand)} steps did what they say in {total:.0f} ms; "
            f"no secret value was printed (checked against {len(secrets_seen)} values)"
        )
        return 0
    return 1


def _ssh_forwarding(*urls: str) -> str:
    """The ``ssh -L`` command that makes ``urls`` (this machine's) work on yours."""
    forwards = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        forwards.append(f"-L {parts.port}:{_url_host(parts.hostname or '')}:{parts.port}")
    return f"ssh -N {' '.join(forwards)} THIS-MACHINE"


def _step_count(by_hand: Optional[float]) -> int:
    # By hand, the prompt, the approval and the callback are one step: yours.
    return 8 if by_hand is None else 6


async def _by_hand(awaitable: Awaitable[T], what: str, timeout: float) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise StepFailed(f"{what}: nothing in {timeout:.0f} s") from None


async def _until_connected(agent: RemoteSecretsClient) -> None:
    while PERSON not in [p.id for p in await agent.list_participants()]:
        await asyncio.sleep(0.2)


async def _steps(
    out: _Output,
    provider: OAuthProvider,
    url: str,
    clock: _DemoClock,
    agent: RemoteSecretsClient,
    person: RemoteSecretsClient,
    person_token: str,
    by_hand: Optional[float] = None,
) -> bool:
    from .adapters.remote import RemoteSecretsClient

    oauth: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "authorization_endpoint": provider.authorization_endpoint,
        "token_endpoint": provider.token_endpoint,
        "scopes": list(SCOPES),
    }
    number = 0
    mark = time.perf_counter()

    def step(title: str, detail: str) -> None:
        nonlocal number, mark
        now = time.perf_counter()
        number += 1
        out.line(f"{number}. {title:<36} {(now - mark) * 1000:7.1f} ms   {detail}")
        mark = time.perf_counter()

    requesting: Optional[asyncio.Task[str]] = None
    try:
        if by_hand is None:
            await _within(person.connect(), "connecting the person")
            prompts = person.oauth_prompts()
        else:
            out.line("   waiting for you to open the page (the agent can only ask a person "
                     "who is connected)...")
            await _by_hand(_until_connected(agent), "waiting for you to open the page", by_hand)
        mark = time.perf_counter()

        # 1. request
        requesting = asyncio.ensure_future(
            agent.request_oauth_token(
                from_participant_id=PERSON, timeout=60 if by_hand is None else by_hand, **oauth
            )
        )
        await asyncio.sleep(0)
        _check(not requesting.done(), "the request ended before anyone approved")
        step("request", f"{AGENT} asks {PERSON} for a {' '.join(SCOPES)} token; it waits")

        if by_hand is None:
            # 2. the prompt reaches the person
            prompt = await _within(prompts.__anext__(), "the prompt reaching the person")
            _check(prompt.from_participant_id == AGENT, "the prompt names another requester")
            _check(prompt.client_id == CLIENT_ID, "the prompt names another client")
            _check(tuple(prompt.scopes) == SCOPES, "the prompt asks for other scopes")
            _check(
                prompt.authorization_url.startswith(provider.authorization_endpoint + "?"),
                "the authorization URL is not the provider's",
            )
            query = dict(
                urllib.parse.parse_qsl(urllib.parse.urlsplit(prompt.authorization_url).query)
            )
            _check(
                query.get("code_challenge_method") == "S256" and bool(query.get("code_challenge")),
                "the authorization URL has no S256 code challenge",
            )
            _check(query.get("redirect_uri") == url + "/oauth/callback", "wrong redirect URI")
            _check(not requesting.done(), "the request ended before anyone approved")
            step(
                "the prompt reaches the person",
                f"over {PERSON}'s WebSocket: from {prompt.from_participant_id}, provider "
                f"{_host_port(prompt.authorization_url)}, PKCE S256",
            )

            # 3. the person approves at the provider
            approvals = len(provider.authorization_requests)
            location = await _within(
                asyncio.to_thread(authorization_redirect, prompt.authorization_url),
                "the provider's answer",
            )
            sent_back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
            _check(
                location.startswith(url + "/oauth/callback?"), "the provider redirected elsewhere"
            )
            _check(bool(sent_back.get("code")) and "error" not in sent_back, "no code came back")
            _check(
                len(provider.authorization_requests) == approvals + 1, "the provider saw nothing"
            )
            step(
                "the person approves at the provider",
                f"{provider.user} approves; the provider redirects to /oauth/callback "
                "with a code (not shown)",
            )

            # 4. /oauth/callback completes it
            page = await _within(asyncio.to_thread(browser_get, location), "/oauth/callback")
            _check(page.status == 200, f"/oauth/callback answered HTTP {page.status}")
            _check(b"Approved" in page.body, "/oauth/callback did not approve")
            _check(page.headers.get("cache-control") == "no-store", "the page may be cached")
            step(
                "/oauth/callback completes it",
                "HTTP 200 'Approved', Cache-Control: no-store; the server exchanged the code",
            )
        else:
            # 2-4 by hand: the page shows the prompt, Approve opens the provider,
            # which redirects the browser to /oauth/callback.
            approvals = len(provider.authorization_requests)
            out.line(f"   approve the request from {AGENT} on the page, in your browser...")
            await _by_hand(asyncio.shield(requesting), "waiting for your approval", by_hand)
            _check(
                len(provider.authorization_requests) == approvals + 1,
                "the provider saw no authorization request",
            )
            step(
                "you approve on the page",
                f"the prompt reached your page; Approve opened "
                f"{_host_port(provider.authorization_endpoint)}, which redirected to "
                "/oauth/callback",
            )

        # 5. the agent gets the token
        token = await _within(requesting, "the agent's token")
        checked = await _within(asyncio.to_thread(_provider_check, provider, token), "/check")
        _check(checked == 200, f"the provider refuses the token (HTTP {checked})")
        stored = [
            s
            for s in await _within(person.list_user_secrets(), "listing")
            if s.type == "oauth_token" and s.delegated_to == AGENT
        ]
        _check(len(stored) == 1, "the credential is not stored as the person's")
        step(
            "the agent gets the token",
            f"{len(token)} characters, accepted by the provider; stored as {PERSON}'s "
            f"secret delegated to {AGENT}",
        )

        # 6. offline fetch, no prompt: the person has left (by hand: the page may stay)
        if by_hand is None:
            await _within(person.close(), "the person leaving")
        posts, authorizations = len(provider.token_requests), len(provider.authorization_requests)
        again = await _within(
            agent.get_offline_oauth_token(delegated_by=PERSON, **oauth), "the offline fetch"
        )
        _check(again == token, "the offline fetch did not return the stored token")
        _check(len(provider.token_requests) == posts, "the offline fetch called the provider")
        _check(
            len(provider.authorization_requests) == authorizations, "the offline fetch prompted"
        )
        # Simulated, the person has left; by hand, their page may still be open.
        gone_by_now = f"{PERSON} has left; " if by_hand is None else ""
        step(
            "offline fetch, without a prompt",
            f"{gone_by_now}no one is asked; the same token comes back; 0 prompts, 0 token POSTs",
        )

        # 7. expiry and one refresh for 50 concurrent callers
        clock.advance(3600)
        refreshes = provider.refresh_posts
        fetched = await _within(
            asyncio.gather(
                *(
                    agent.get_offline_oauth_token(delegated_by=PERSON, **oauth)
                    for _ in range(CONCURRENT_CALLERS)
                )
            ),
            "the concurrent offline fetches",
        )
        fresh = set(fetched)
        _check(len(fresh) == 1 and None not in fresh, "the callers got different answers")
        new_token = next(iter(fresh))
        _check(new_token is not None and new_token != token, "the token was not refreshed")
        _check(provider.refresh_posts - refreshes == 1, "not exactly one refresh POST")
        checked = await _within(
            asyncio.to_thread(_provider_check, provider, new_token or ""), "/check"
        )
        _check(checked == 200, f"the provider refuses the refreshed token (HTTP {checked})")
        step(
            "expiry, one refresh for 50 callers",
            f"the server's clock moves 1 h on; {CONCURRENT_CALLERS} concurrent fetches get one "
            f"new token from {provider.refresh_posts - refreshes} refresh POST "
            "(refresh token rotated)",
        )

        # 8. delete, then an offline fetch returns none
        async with RemoteSecretsClient(url, token=person_token) as owner:
            listed = await _within(owner.list_user_secrets(), "listing")
            credential = [s for s in listed if s.type == "oauth_token"]
            _check(len(credential) == 1, "the person's credential is missing")
            await _within(
                owner.delete_user_secret(id=credential[0].id, delegated_to=AGENT), "deleting"
            )
            left = await _within(owner.list_user_secrets(), "listing")
        _check(not [s for s in left if s.type == "oauth_token"], "the credential is still there")
        posts = len(provider.token_requests)
        gone = await _within(
            agent.get_offline_oauth_token(delegated_by=PERSON, **oauth), "the offline fetch"
        )
        _check(gone is None, "the offline fetch still returned a token")
        _check(len(provider.token_requests) == posts, "the offline fetch called the provider")
        step(
            "delete, then an offline fetch",
            f"{PERSON} deletes the credential; the agent's offline fetch returns none",
        )
        return True
    except StepFailed as failure:
        out.line(f"{number + 1}. FAILED: {failure}")
        return False
    except Exception as error:
        out.line(f"{number + 1}. FAILED: {type(error).__name__}: {_safe_message(error)}")
        return False
    finally:
        if requesting is not None and not requesting.done():
            requesting.cancel()


def _safe_message(error: BaseException) -> str:
    from .core.errors import RoomSecretsError

    # Our errors never hold a secret; others we cannot vouch for.
    return str(error) if isinstance(error, RoomSecretsError) else "(details withheld)"


def _provider_check(provider: OAuthProvider, token: str) -> int:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the provider's own http URL
        provider.check_endpoint, headers={"Authorization": f"Bearer {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as refused:
        return refused.code
