"""The ``roomsecrets`` CLI, run as subprocesses against a real ``roomsecrets serve``
on 127.0.0.1 (ephemeral port) and the development provider: the seed flow with the
approval through ``/oauth/callback``, reuse, offline fetch, refresh, listing,
deleting, participants, generic secrets, and every error as one line on stderr.

Every command's output is checked: no secret appears in it except the one value
the command exists to print (``token mint``: the JWT; ``oauth2 request``/``get``:
the access token; ``secret get``: the secret)."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Optional

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from tests.adapters.server_kit import approve_via_callback
from tests.support import leak_watch
from tests.support.fake_provider import FakeProvider

REPO = Path(__file__).resolve().parents[2]
ROOM = "cliroom"
CLIENT_ID = "cli-mail"
KEY = secrets.token_hex(32)
leak_watch.remember_secret(KEY)
TIMEOUT = 60


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``roomsecrets serve`` in a subprocess."""

    def __init__(self, store: str, env: dict[str, str], *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.callback = self.url + "/oauth/callback"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roomsecrets", "serve", "--port", str(self.port),
             "--store", store, *flags],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        assert f"serving on {self.url}" in first, first
        # Keep draining the log so the server never blocks on a full pipe.
        self.log: list[str] = [first]
        self._drain = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._drain.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._drain.join(5)


class Cli:
    """Runs CLI commands and remembers what each printed, for the leak check."""

    def __init__(self, server: Server, env: dict[str, str]) -> None:
        self.server = server
        self.env = env
        #: (argv, stdout, stderr, the one secret stdout may hold, other values it may hold)
        self.outputs: list[tuple[list[str], str, str, Optional[str], frozenset[str]]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "roomsecrets", *args]

    def run(
        self, *args: str, token: Optional[str] = None, prints_secret: bool = False,
        check: bool = True, stdin: Optional[str] = None,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if token is not None:
            env["ROOMSECRETS_TOKEN"] = token
        done = subprocess.run(
            self.argv(*args), env=env, capture_output=True, text=True, timeout=TIMEOUT,
            input=stdin,
        )
        self.note(list(args), done.stdout, done.stderr, prints_secret)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def note(
        self, args: list[str], stdout: str, stderr: str, prints_secret: bool,
        also_allowed: frozenset[str] = frozenset(),
    ) -> None:
        # The session-wide scan sees every CLI process's output by itself
        # (tests/support/leak_watch.py); this list is for assert_no_secrets.
        allowed = stdout.strip() if prints_secret and stdout.strip() else None
        self.outputs.append((args, stdout, stderr, allowed, also_allowed))

    def mint(self, participant_id: str, *extra: str) -> str:
        done = self.run("token", "mint", "--room", ROOM, "--participant-id", participant_id,
                        *extra, prints_secret=True)
        return done.stdout.strip()

    def assert_no_secrets(self, values: set[str]) -> None:
        for args, stdout, stderr, allowed, also_allowed in self.outputs:
            for value in values:
                assert value not in stderr, (args, "stderr holds a secret")
                if value != allowed and value not in also_allowed:
                    assert value not in stdout, (args, "stdout holds a secret")
            if allowed is not None:
                assert stdout.strip() == allowed  # the value and nothing else


#: Every failure, whatever its kind: ``roomsecrets: error: MESSAGE (code)``.
ERROR_LINE = re.compile(r"roomsecrets: error: \S.* \([a-z_]+\)")


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert ERROR_LINE.fullmatch(lines[0]), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("cli-store")
    running = Server(f"file:{folder}", cli_env(ROOMSECRETS_JWT_KEY=KEY))
    try:
        yield running
    finally:
        running.stop()
    # The server's log: access records only, never a query string or a secret
    # (the session-wide scan reads it as the server's stderr).
    assert not any("code=" in line or "state=" in line for line in running.log)


@pytest.fixture
def provider(server: Server) -> Iterator[FakeProvider]:
    seen: set[str] = set()

    def remember(value: str) -> None:
        leak_watch.remember_secret(value)
        seen.add(value)

    with FakeProvider(on_secret=remember) as running:
        running.register_client(CLIENT_ID, redirect_uris=[server.callback])
        running.seen = seen  # type: ignore[attr-defined]
        yield running


@pytest.fixture
def cli(server: Server) -> Cli:
    return Cli(server, cli_env(ROOMSECRETS_JWT_KEY=KEY, ROOMSECRETS_SERVER=server.url))


def oauth_flags(provider: FakeProvider) -> list[str]:
    return [
        "--client-id", CLIENT_ID,
        "--authorization-endpoint", provider.authorization_endpoint,
        "--token-endpoint", provider.token_endpoint,
    ]


class Prompts:
    """``oauth2 prompts`` running: the person is connected while it runs."""

    def __init__(self, cli: Cli, token: str, *flags: str) -> None:
        env = dict(cli.env, ROOMSECRETS_TOKEN=token)
        self.cli = cli
        self.process = subprocess.Popen(
            cli.argv("oauth2", "prompts", "--room", ROOM, *flags),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None and self.process.stdout is not None
        connected = self.process.stderr.readline()
        assert "connected as" in connected, connected
        self.stderr = [connected]
        self.lines: list[str] = []

    def next_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "oauth2 prompts ended"
        self.lines.append(line)
        return line

    def stop(self) -> None:
        self.process.terminate()
        _, rest = self.process.communicate(timeout=10)
        # SPEC: a prompt line carries the authorization URL, whose query holds the
        # state; nothing else secret may appear.
        states = frozenset(
            value
            for line in self.lines
            for name, value in urllib.parse.parse_qsl(
                urllib.parse.urlsplit(re.findall(r"http\S+?(?=[\"\s])", line)[0]).query
            )
            if name == "state"
        )
        self.cli.note(["oauth2", "prompts"], "".join(self.lines), "".join(self.stderr) + rest,
                      False, states)


def start_request(cli: Cli, token: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli.argv("oauth2", "request", "--room", ROOM, *flags),
        env=dict(cli.env, ROOMSECRETS_TOKEN=token),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(cli: Cli, process: subprocess.Popen[str], prints_secret: bool) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    cli.note(["oauth2", "request"], stdout, stderr, prints_secret)
    return process.returncode, stdout, stderr


def provider_accepts(provider: FakeProvider, token: str) -> bool:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        provider.check_endpoint, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False


# --- the seed flow -----------------------------------------------------------------------


def test_the_seed_flow_through_the_cli_with_the_approval_through_the_callback(
    cli: Cli, provider: FakeProvider
) -> None:
    agent = cli.mint("agent-1", "--name", "mailbot", "--grant", "allow-all")
    alice = cli.mint("alice", "--name", "Alice")
    prompts = Prompts(cli, alice, "--json")
    try:
        listed = cli.run("participant", "list", "--room", ROOM, "--json", token=agent)
        assert json.loads(listed.stdout) == [{"id": "alice", "name": "Alice"}]

        asking = start_request(
            cli, agent, "--from-participant-id", "alice", *oauth_flags(provider),
            "--scopes", "mail.read, mail.send", "--scopes", "calendar", "--timeout", "30",
        )
        prompt = json.loads(prompts.next_line())
        assert set(prompt) == {
            "request_id", "authorization_url", "from_participant_id", "client_id", "scopes",
            "expires_at",
        }
        assert prompt["from_participant_id"] == "agent-1"
        assert prompt["client_id"] == CLIENT_ID
        assert prompt["scopes"] == ["mail.read", "mail.send", "calendar"]
        assert prompt["authorization_url"].startswith(provider.authorization_endpoint + "?")
        time.sleep(0.8)  # long enough for the "waiting" notice
        status, _, page = approve_via_callback(prompt["authorization_url"])
        assert status == 200 and "approved" in page
        code, token, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert code == 0, stderr
    token = token.strip()
    assert token and "\n" not in token
    assert provider_accepts(provider, token)
    assert re.search(r"waiting for alice to approve \(\d+ s left\)", stderr)

    # Reuse: alice has left; the stored credential comes back without a prompt.
    authorizations = len(provider.authorization_requests)
    again = cli.run(
        "oauth2", "request", "--room", ROOM, "--from-participant-id", "alice",
        *oauth_flags(provider), "--scopes", "mail.read", token=agent, prints_secret=True,
    )
    assert again.stdout.strip() == token
    assert "waiting" not in again.stderr
    offline = cli.run(
        "oauth2", "get", "--room", ROOM, "--delegated-by", "alice", *oauth_flags(provider),
        "--scopes", "mail.read mail.send", token=agent, prints_secret=True,
    )
    assert offline.stdout.strip() == token
    assert len(provider.authorization_requests) == authorizations

    # The person's list, as JSON and as text.
    mine = json.loads(cli.run("oauth2", "list", "--room", ROOM, "--json", token=alice).stdout)
    assert len(mine) == 1
    assert mine[0]["type"] == "oauth_token" and mine[0]["delegated_to"] == "agent-1"
    assert set(mine[0]) == {"id", "type", "name", "delegated_to"}
    text = cli.run("oauth2", "list", "--room", ROOM, token=alice).stdout
    assert mine[0]["id"] in text and "agent-1" in text

    # Delete: revoked at the provider although no issuer was ever named (found at the
    # token endpoint's origin); then the offline fetch has nothing: exit 1, one line.
    deleted = cli.run("oauth2", "delete", "--room", ROOM, "--id", mine[0]["id"],
                      "--delegated-to", "agent-1", token=alice)
    host = provider.issuer.split("//", 1)[1]
    assert deleted.stderr.strip() == (
        f"deleted {mine[0]['id']!r} (delegated to agent-1); revoked at {host}")
    assert provider.revocation_requests == 1 and provider.revoked_grants
    assert json.loads(cli.run("oauth2", "list", "--room", ROOM, "--json", token=alice).stdout) == []
    gone = cli.run(
        "oauth2", "get", "--room", ROOM, "--delegated-by", "alice", *oauth_flags(provider),
        token=agent, check=False,
    )
    assert gone.returncode == 1
    assert "alice" in one_error_line(gone)
    cli.assert_no_secrets(provider.seen | {agent, alice, KEY})  # type: ignore[attr-defined]


def test_an_expired_token_is_refreshed_once_through_the_cli(
    cli: Cli, provider: FakeProvider
) -> None:
    provider.access_token_lifetime = 2  # refresh leeway is capped at half: 1 s
    agent = cli.mint("agent-2", "--grant", "allow-all")
    bob = cli.mint("bob")
    prompts = Prompts(cli, bob)
    try:
        asking = start_request(cli, agent, "--from-participant-id", "bob",
                               *oauth_flags(provider), "--scopes", "files")
        line = prompts.next_line()
        _request_id, who, client, scopes, url = line.rstrip("\n").split("\t")
        assert (who, client, scopes) == ("from agent-2", f"client {CLIENT_ID}", "scopes files")
        approve_via_callback(url)
        code, first, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert code == 0, stderr
    time.sleep(2.1)
    posts = provider.refresh_posts
    fresh = cli.run("oauth2", "get", "--room", ROOM, "--delegated-by", "bob",
                    *oauth_flags(provider), "--scopes", "files", token=agent,
                    prints_secret=True).stdout.strip()
    assert fresh and fresh != first.strip()
    assert provider.refresh_posts == posts + 1
    assert provider_accepts(provider, fresh)
    cli.assert_no_secrets(provider.seen | {agent, bob, KEY})  # type: ignore[attr-defined]


def test_a_rejected_prompt_ends_the_request_with_one_line(
    cli: Cli, provider: FakeProvider
) -> None:
    agent = cli.mint("agent-3", "--grant", "allow-all")
    carol = cli.mint("carol")
    prompts = Prompts(cli, carol, "--json")
    try:
        asking = start_request(cli, agent, "--from-participant-id", "carol",
                               *oauth_flags(provider), "--timeout", "30")
        prompt = json.loads(prompts.next_line())
        # VALUE joined with '=': a random id, code or state may start with '-'.
        cli.run("oauth2", "reject", "--room", ROOM, f"--request-id={prompt['request_id']}",
                token=carol)
        code, stdout, stderr = finish(cli, asking, prints_secret=False)
        again = cli.run("oauth2", "reject", "--room", ROOM,
                        f"--request-id={prompt['request_id']}", token=carol, check=False)
    finally:
        prompts.stop()
    assert code != 0 and stdout == ""
    assert len([line for line in stderr.splitlines() if "waiting" not in line]) == 1
    assert "Traceback" not in stderr
    one_error_line(again)  # answered already / unknown
    cli.assert_no_secrets(provider.seen | {agent, carol, KEY})  # type: ignore[attr-defined]


def test_provide_answers_a_prompt_with_a_code(cli: Cli, provider: FakeProvider) -> None:
    from tests.support.headless_person import approve

    agent = cli.mint("agent-4", "--grant", "allow-all")
    dave = cli.mint("dave")
    prompts = Prompts(cli, dave, "--json")
    try:
        # --redirect-uri given: the code comes back to the person, who passes it on.
        provider.register_client(
            CLIENT_ID, redirect_uris=[cli.server.callback, "https://app.example/cb"]
        )
        asking = start_request(cli, agent, "--from-participant-id", "dave",
                               *oauth_flags(provider), "--redirect-uri", "https://app.example/cb")
        prompt = json.loads(prompts.next_line())
        # Not this server's callback: the prompt says where the code will go.
        assert prompt["redirect_uri"] == "https://app.example/cb"
        code, state = approve(prompt["authorization_url"])
        cli.run("oauth2", "provide", "--room", ROOM, f"--request-id={prompt['request_id']}",
                f"--code={code}", f"--state={state}", token=dave)
        status, token, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert status == 0, stderr
    assert provider_accepts(provider, token.strip())
    cli.assert_no_secrets(provider.seen | {agent, dave, KEY})  # type: ignore[attr-defined]


# --- generic secrets, participants ---------------------------------------------------------


def test_secret_set_get_list_delete(cli: Cli, tmp_path: Path) -> None:
    erin = cli.mint("erin")
    value = "s3cret-" + secrets.token_hex(8)
    cli.run("secret", "set", "--room", ROOM, "--id", "db", "--value", value,
            "--type", "text/plain", "--name", "database", token=erin)
    got = cli.run("secret", "get", "--room", ROOM, "--id", "db", token=erin, prints_secret=True)
    assert got.stdout == value
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)))
    cli.run("secret", "set", "--room", ROOM, "--id", "blob", "--file", str(binary), token=erin)
    raw = subprocess.run(
        cli.argv("secret", "get", "--room", ROOM, "--id", "blob"),
        env=dict(cli.env, ROOMSECRETS_TOKEN=erin), capture_output=True, timeout=TIMEOUT,
    )
    assert raw.returncode == 0 and raw.stdout == bytes(range(256))
    cli.run("secret", "set", "--room", ROOM, "--id", "piped", token=erin, stdin=value + "2")
    listed = json.loads(cli.run("secret", "list", "--room", ROOM, "--json", token=erin).stdout)
    assert {(s["id"], s["type"], s["name"]) for s in listed} == {
        ("db", "text/plain", "database"),
        ("blob", "application/octet-stream", None),
        ("piped", "application/octet-stream", None),
    }
    # oauth2 list shows OAuth credentials only.
    assert json.loads(cli.run("oauth2", "list", "--room", ROOM, "--json", token=erin).stdout) == []
    for secret_id in ("db", "blob", "piped"):
        cli.run("secret", "delete", "--room", ROOM, "--id", secret_id, token=erin)
    assert json.loads(cli.run("secret", "list", "--room", ROOM, "--json", token=erin).stdout) == []
    missing = cli.run("secret", "get", "--room", ROOM, "--id", "db", token=erin, check=False)
    assert missing.returncode == 1 and "db" in one_error_line(missing)
    cli.assert_no_secrets({value, value + "2", erin, KEY})


def test_server_and_token_are_accepted_before_or_after_the_subcommand(
    cli: Cli, server: Server
) -> None:
    frank = cli.mint("frank")
    env = {k: v for k, v in cli.env.items() if k != "ROOMSECRETS_SERVER"}
    for argv in (
        ["--server", server.url, "--token", frank, "participant", "list", "--room", ROOM],
        ["participant", "list", "--room", ROOM, "--server", server.url, "--token", frank],
        ["--server", "http://127.0.0.1:1", "participant", "list", "--room", ROOM,
         "--server", server.url, "--token", frank],
    ):
        done = subprocess.run(cli.argv(*argv), env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""
        assert done.stderr == "no participants connected\n"
    # Nobody connected: an empty list.
    listed = cli.run("participant", "list", "--room", ROOM, "--json", token=frank)
    assert json.loads(listed.stdout) == []


# --- errors: one line, no traceback, non-zero --------------------------------------------


def test_a_room_that_is_not_the_tokens_room_is_a_clear_error(cli: Cli) -> None:
    token = cli.mint("gina")
    done = cli.run("participant", "list", "--room", "elsewhere", token=token, check=False)
    line = one_error_line(done)
    assert "cliroom" in line and "elsewhere" in line


@pytest.mark.parametrize(
    "kind", ["garbage", "wrong key", "expired", "alg none", "no grant claim"]
)
def test_a_bad_token_is_one_line_on_stderr(cli: Cli, kind: str) -> None:
    if kind == "garbage":
        token = "not-a-jwt"
    elif kind == "wrong key":
        token = mint_participant_token(secrets.token_bytes(32), room=ROOM, participant_id="x")
    elif kind == "expired":
        token = mint_participant_token(KEY, room=ROOM, participant_id="x", ttl=10,
                                       now=time.time() - 100)
    elif kind == "alg none":
        import jwt

        token = jwt.encode(
            {"room": ROOM, "sub": "x", "grant": {}, "exp": int(time.time()) + 60},
            None, algorithm="none",  # type: ignore[arg-type]
        )
    else:
        import jwt

        token = jwt.encode({"room": ROOM, "sub": "x", "exp": int(time.time()) + 60}, KEY)
    done = cli.run("secret", "list", "--room", ROOM, token=token, check=False)
    line = one_error_line(done)
    assert line.endswith("(invalid_token)")
    assert token not in line
    signed_elsewhere = "it was signed with another key than the server's" in line
    assert signed_elsewhere == (kind == "wrong key")


def test_a_token_signed_with_another_key_says_how_to_mint_one_with_the_server_s_key(
    cli: Cli,
) -> None:
    token = mint_participant_token(secrets.token_bytes(32), room=ROOM, participant_id="x")
    expected = (
        "roomsecrets: error: the participant token's signature is wrong: it was signed with "
        "another key than the server's; mint the token with the server's key: run "
        "'roomsecrets token mint' where the server runs, with the server's --store file:DIR "
        "or its ROOMSECRETS_JWT_KEY (invalid_token)")
    listed = cli.run("oauth2", "list", token=token, check=False)
    assert one_error_line(listed) == expected
    # oauth2 prompts too, although a refused WebSocket handshake gives no reason.
    prompts = cli.run("oauth2", "prompts", token=token, check=False)
    assert one_error_line(prompts) == expected


def test_the_room_is_the_token_s_unless_room_names_it(cli: Cli) -> None:
    token = cli.mint("olga")
    cli.run("secret", "set", "--id", "note", "--value", "v", token=token)
    without = cli.run("secret", "list", "--json", token=token)
    with_room = cli.run("secret", "list", "--room", ROOM, "--json", token=token)
    assert json.loads(without.stdout) == json.loads(with_room.stdout) != []
    other = cli.run("secret", "list", "--room", "elsewhere", token=token, check=False)
    assert one_error_line(other) == (
        f"roomsecrets: error: the token is for room {ROOM!r}, not 'elsewhere' (invalid_input)")


@pytest.mark.parametrize("command", [["oauth2", "list"], ["secret", "list"]])
def test_an_empty_list_says_so_on_stderr_and_json_prints_an_empty_list(
    cli: Cli, command: list[str]
) -> None:
    token = cli.mint("nobody-" + secrets.token_hex(4))
    said = "no OAuth credentials\n" if command[0] == "oauth2" else "no secrets\n"
    text = cli.run(*command, token=token)
    assert (text.stdout, text.stderr) == ("", said)
    as_json = cli.run(*command, "--json", token=token)
    assert (as_json.stdout, as_json.stderr) == ("[]\n", said)


def test_file_errors_name_the_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    grant = cli.run("token", "mint", "--room", ROOM, "--participant-id", "x",
                    "--grant", f"@{missing}", check=False)
    assert grant.returncode == 1
    assert one_error_line(grant) == (
        f"roomsecrets: error: {missing}: No such file or directory (file_error)")
    token = cli.mint("pia")
    secret = cli.run("secret", "set", "--id", "s", "--file", str(missing), token=token,
                     check=False)
    assert one_error_line(secret) == (
        f"roomsecrets: error: {missing}: No such file or directory (file_error)")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--port", "99999"],
         "serve: argument --port: '99999' is not a port: use 0 to 65535 (0: a free one)"),
        (["serve", "--port", "http"], "serve: argument --port: 'http' is not a port number"),
        (["serve", "--store", "s3:bucket"],
         "serve: argument --store: must be file:DIR, memory or aws:PREFIX, not 's3:bucket'"),
        (["serve", "--store", "memory", "--public-url", "http://x:99999"],
         "serve: --public-url is not a valid URL"),
        (["token", "mint", "--room", "r", "--participant-id", "p", "--ttl", "-5"],
         "token mint: argument --ttl: '-5' must be more than 0 seconds"),
        (["oauth2", "nope"], None),
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], said: Optional[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "roomsecrets", *argv],
                          env=cli_env(ROOMSECRETS_JWT_KEY=KEY), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2
    line = one_error_line(done)
    assert line.endswith(" (usage_error)")
    if said is not None:
        assert line == f"roomsecrets: error: {said} (usage_error)"


def test_serve_names_the_address_it_cannot_listen_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "roomsecrets", "serve", "--store", "memory", "--port",
             str(port)],
            env=cli_env(ROOMSECRETS_JWT_KEY=KEY), capture_output=True, text=True,
            timeout=TIMEOUT,
        )
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"roomsecrets: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(listen_failed)")


def test_a_missing_token_an_unreachable_server_and_bad_usage(cli: Cli) -> None:
    no_token = cli.run("oauth2", "list", "--room", ROOM, check=False)
    assert no_token.returncode == 2  # a usage error, as docs/cli.md says
    assert one_error_line(no_token) == (
        "roomsecrets: error: no participant token: pass --token or set ROOMSECRETS_TOKEN "
        "(usage_error)")
    token = cli.mint("hank")
    down = cli.run("--server", "http://127.0.0.1:1", "oauth2", "list", "--room", ROOM,
                   token=token, check=False)
    assert down.returncode == 1
    assert one_error_line(down) == (
        "roomsecrets: error: cannot reach the room server at 127.0.0.1:1: connection refused "
        "(connect_error)")
    usage = cli.run("oauth2", "delete", token=token, check=False)
    assert usage.returncode == 2
    assert one_error_line(usage) == (
        "roomsecrets: error: oauth2 delete: the following arguments are required: --id "
        "(usage_error)")
    bad_grant = cli.run("token", "mint", "--room", ROOM, "--participant-id", "x",
                        "--grant", "{nope", check=False)
    assert "--grant" in one_error_line(bad_grant)
    denied = cli.run("oauth2", "request", "--room", ROOM, "--from-participant-id", "alice",
                     "--client-id", "c", "--authorization-endpoint", "http://127.0.0.1:1/a",
                     "--token-endpoint", "http://127.0.0.1:1/t", token=token, check=False)
    assert one_error_line(denied).endswith(
        "; mint the token with a --grant that allows it: see docs/grants.md (grant_denied)")
    unknown = cli.run("oauth2", "provide", "--room", ROOM, "--request-id", "nope",
                      "--code", "c0de-value", token=token, check=False)
    one_error_line(unknown)


def test_grants_from_json_and_from_a_file(cli: Cli, tmp_path: Path) -> None:
    import jwt

    rule = {"oauth": [{"client_id": CLIENT_ID, "participants": ["alice"]}]}
    inline = cli.mint("ivy", "--grant", json.dumps(rule), "--ttl", "60")
    grant_file = tmp_path / "grant.json"
    grant_file.write_text(json.dumps(rule))
    from_file = cli.mint("ivy", "--grant", "@" + str(grant_file))
    for token in (inline, from_file):
        claims = jwt.decode(token, KEY, algorithms=["HS256"])
        assert claims["room"] == ROOM and claims["sub"] == "ivy"
        assert claims["grant"]["oauth"][0]["client_id"] == CLIENT_ID
    claims = jwt.decode(inline, KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 60


# --- the signing key in the file store's folder ---------------------------------------------


def mint_argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "roomsecrets", "token", "mint", "--room", ROOM,
            "--participant-id", "jack", *extra]


def test_serve_creates_the_key_file_says_where_and_token_mint_signs_with_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    env = cli_env()
    running = Server(f"file:{folder}", env)
    try:
        key_file = folder / "jwt.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        # serve's second line says where the key is, and which --store reads it.
        deadline = time.monotonic() + TIMEOUT
        while len(running.log) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.log[1].strip() == (
            f"roomsecrets: signing key {key_file} (token mint --store file:{folder} "
            "signs with it)")
        mint = subprocess.run(mint_argv("--store", f"file:{folder}"), env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert mint.returncode == 0, mint.stderr
        done = subprocess.run(
            [sys.executable, "-m", "roomsecrets", "participant", "list",
             "--server", running.url, "--token", mint.stdout.strip()],
            env=env, capture_output=True, text=True, timeout=TIMEOUT,
        )
    finally:
        running.stop()
    assert done.returncode == 0, done.stderr
    assert key_file.read_text().strip() not in mint.stdout + done.stdout + "".join(running.log)
    memory = subprocess.run(mint_argv("--store", "memory"), env=env, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert "ROOMSECRETS_JWT_KEY" in one_error_line(memory)


def test_serve_with_the_key_in_the_environment_says_so(tmp_path: Path) -> None:
    running = Server(f"file:{tmp_path}", cli_env(ROOMSECRETS_JWT_KEY=KEY))
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(running.log) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        running.stop()
    assert running.log[1].strip() == "roomsecrets: signing key from ROOMSECRETS_JWT_KEY"
    assert not (tmp_path / "jwt.key").exists()


@pytest.mark.parametrize("where", ["default", "missing folder", "empty folder"])
def test_token_mint_never_creates_a_key_or_a_folder(tmp_path: Path, where: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if where == "default":
        store, folder = [], work / ".roomsecrets"
        shown = "./.roomsecrets"
    elif where == "missing folder":
        folder = tmp_path / "nonexistent" / "dir"
        store, shown = ["--store", f"file:{folder}"], str(folder)
    else:
        folder = tmp_path / "empty"
        folder.mkdir()
        store, shown = ["--store", f"file:{folder}"], str(folder)
    done = subprocess.run(mint_argv(*store), env=cli_env(), cwd=work, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"roomsecrets: error: no signing key: ROOMSECRETS_JWT_KEY is not set and "
        f"{folder / 'jwt.key'} does not exist; 'roomsecrets serve --store file:{shown}' "
        "creates it when it starts (or set ROOMSECRETS_JWT_KEY to the server's key) "
        "(configuration_error)")
    assert not (folder / "jwt.key").exists()
    assert list(work.iterdir()) == []
    assert not (tmp_path / "nonexistent").exists()


def _symlinked_key(key_file: Path) -> str:
    target = key_file.with_name("planted.key")
    target.write_text("ab" * 32 + "\n")
    target.chmod(0o600)
    key_file.symlink_to(target)
    return f"signing key file {key_file} is a symlink; refusing it"


def _key_readable_by_others(key_file: Path) -> str:
    key_file.write_text("ab" * 32 + "\n")
    key_file.chmod(0o644)
    return f"signing key file {key_file} has mode 0644; it must be 0600 (chmod 600 {key_file})"


def _key_of_another_user(key_file: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    key_file.write_text("ab" * 32 + "\n")
    key_file.chmod(0o600)
    os.chown(key_file, 12345, -1)
    return f"signing key file {key_file} is owned by uid 12345, not you (uid 0); refusing it"


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners, modes and symlinks")
@pytest.mark.parametrize("plant", [_symlinked_key, _key_readable_by_others, _key_of_another_user])
def test_token_mint_refuses_a_key_file_someone_else_could_have_chosen(
    tmp_path: Path, plant: Callable[[Path], str]
) -> None:
    folder = tmp_path / "store"
    folder.mkdir(mode=0o700)
    expected = plant(folder / "jwt.key")
    done = subprocess.run(
        [sys.executable, "-m", "roomsecrets", "token", "mint", "--store", f"file:{folder}",
         "--room", ROOM, "--participant-id", "jack"],
        env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert one_error_line(done) == f"roomsecrets: error: {expected} (invalid_input)"
    assert done.returncode == 1


# --- what the CLI imports -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["oauth2", "request", "--help"],
        ["secret", "set", "--help"],
        ["demo", "--help"],
        ["dev-provider", "--help"],
        ["token", "mint", "--room", "r", "--participant-id", "p"],
        ["oauth2", "list"],  # a usage error
    ],
)
def test_help_and_serverless_commands_import_neither_aiohttp_nor_boto3(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from roomsecrets.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in ('aiohttp', 'boto3', 'botocore') if m in sys.modules)\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(ROOMSECRETS_JWT_KEY=KEY),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert "LOADED []" in done.stderr, done.stderr


def test_import_roomsecrets_and_its_cli_module_stay_light() -> None:
    code = (
        "import sys, roomsecrets, roomsecrets.cli\n"
        "print(sorted(m for m in ('aiohttp', 'boto3', 'jwt', 'roomsecrets.adapters.server.app',"
        " 'http.server') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True,
                          text=True, timeout=TIMEOUT, check=True)
    assert done.stdout.strip() == "[]"


def test_python_dash_m_roomsecrets_is_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "roomsecrets", "--help"], env=cli_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0
    for command in ("serve", "token", "oauth2", "participant", "secret", "demo"):
        assert command in done.stdout


# --- the session-wide leak scan sees every CLI process ---------------------------------


def test_every_cli_process_output_reaches_the_leak_scan(cli: Cli) -> None:
    # No helper involved: a bare subprocess.run of the CLI is watched too.
    planted = "planted-" + secrets.token_hex(8)
    done = subprocess.run(cli.argv("oauth2", "list", "--room", ROOM, f"--no-such-{planted}"),
                          env=cli.env, capture_output=True, text=True, timeout=TIMEOUT)
    assert planted in done.stderr
    found = [text for text in leak_watch.recorded_texts() if planted in text]
    assert found, "the CLI's stderr was not recorded"
    assert leak_watch.scan([planted], [("cli", text) for text in found])
    # The one value `token mint` exists to print is allowed on its stdout, and
    # becomes a secret the scan looks for everywhere else.
    jwt = cli.mint("watched-one")
    assert not any(jwt in text for text in leak_watch.recorded_texts())
    assert leak_watch.remembered(jwt)


def test_a_cli_command_is_named_by_its_words_not_its_option_values() -> None:
    assert leak_watch.cli_command([sys.executable, "-m", "roomsecrets", "token", "mint"]) == [
        "token", "mint"]
    assert leak_watch.cli_command([sys.executable, "-c", "print(1)"]) is None
    assert leak_watch.cli_command("roomsecrets token mint") is None  # a shell string: not ours
    assert leak_watch._subcommand(["--server", "http://x", "--token", "t", "oauth2", "get",
                                   "--room", "r"]) == ("oauth2", "get")


def test_deletes_that_cannot_do_what_was_asked_fail_with_one_line_and_change_nothing(
    cli: Cli,
) -> None:
    erin = cli.mint("erin")
    cli.run("secret", "set", "--room", ROOM, "--id", "api-key", "--value", "k",
            "--delegated-to", "agent-1", token=erin)
    nothing = cli.run("secret", "delete", "--room", ROOM, "--id", "nope", token=erin, check=False)
    assert nothing.returncode == 1
    assert "no secret 'nope' delegated to nobody" in one_error_line(nothing)
    elsewhere = cli.run("oauth2", "delete", "--room", ROOM, "--id", "api-key", token=erin,
                        check=False)
    assert "you have one delegated to agent-1 (--delegated-to agent-1)" in one_error_line(
        elsewhere)
    generic = cli.run("oauth2", "delete", "--room", ROOM, "--id", "api-key",
                      "--delegated-to", "agent-1", token=erin, check=False)
    assert generic.returncode == 1
    assert "not an OAuth credential" in one_error_line(generic)
    listed = json.loads(cli.run("secret", "list", "--room", ROOM, "--json", token=erin).stdout)
    assert [(s["id"], s["delegated_to"]) for s in listed] == [("api-key", "agent-1")]
    removed = cli.run("secret", "delete", "--room", ROOM, "--id", "api-key",
                      "--delegated-to", "agent-1", token=erin)
    assert removed.stderr.strip() == "deleted 'api-key' (delegated to agent-1)"


def test_serve_flags_bound_what_one_participant_stores(tmp_path: Path) -> None:
    limited = Server(f"file:{tmp_path}", cli_env(ROOMSECRETS_JWT_KEY=KEY),
                     "--max-secrets", "2", "--max-secret-bytes", "10")
    try:
        run = Cli(limited, cli_env(ROOMSECRETS_JWT_KEY=KEY, ROOMSECRETS_SERVER=limited.url))
        erin = run.mint("erin")
        run.run("secret", "set", "--room", ROOM, "--id", "a", "--value", "12345", token=erin)
        run.run("secret", "set", "--room", ROOM, "--id", "b", "--value", "1", token=erin)
        third = run.run("secret", "set", "--room", ROOM, "--id", "c", "--value", "1",
                        token=erin, check=False)
        assert third.returncode == 1
        assert "the most one participant may have (2)" in one_error_line(third)
        too_big = run.run("secret", "set", "--room", ROOM, "--id", "b", "--value", "123456",
                          token=erin, check=False)
        assert "over the 10-byte limit" in one_error_line(too_big)
        # Replacing within the limits always works; nothing else changed.
        run.run("secret", "set", "--room", ROOM, "--id", "b", "--value", "12345", token=erin)
        listed = json.loads(run.run("secret", "list", "--room", ROOM, "--json", token=erin).stdout)
        assert sorted(s["id"] for s in listed) == ["a", "b"]
        bad = run.run("serve", "--max-secrets", "0", check=False)
        assert bad.returncode == 2 and "must be at least 1" in bad.stderr
    finally:
        limited.stop()


def test_a_secret_delegated_to_someone_is_read_by_owner_and_delegate(cli: Cli) -> None:
    owner = cli.mint("olga")
    agent = cli.mint("agent-9")
    cli.run("secret", "set", "--id", "for-agent", "--value", "key-0123456789",
            "--delegated-to", "agent-9", token=owner)
    missing = cli.run("secret", "get", "--id", "for-agent", token=owner, check=False)
    assert "you have one delegated to agent-9 (--delegated-to agent-9)" in one_error_line(missing)
    mine = cli.run("secret", "get", "--id", "for-agent", "--delegated-to", "agent-9",
                   token=owner, prints_secret=True)
    assert mine.stdout == "key-0123456789"
    theirs = cli.run("secret", "get", "--id", "for-agent", "--delegated-by", "olga",
                     token=agent, prints_secret=True)
    assert theirs.stdout == "key-0123456789"
    nobody = cli.run("secret", "get", "--id", "for-agent", "--delegated-by", "someone",
                     token=agent, check=False)
    assert "that someone delegated to you" in one_error_line(nobody)
    both = cli.run("secret", "get", "--id", "x", "--delegated-by", "a", "--delegated-to", "b",
                   token=agent, check=False)
    assert both.returncode == 2


def test_both_the_owner_and_the_delegate_see_a_delegated_secret_in_secret_list(cli: Cli) -> None:
    owner = cli.mint("olive")
    agent = cli.mint("agent-7")
    cli.run("secret", "set", "--id", "for-agent", "--value", "key-0123456789",
            "--delegated-to", "agent-7", "--name", "Mail key", token=owner)
    cli.run("secret", "set", "--id", "own-key", "--value", "key-9876543210", token=agent)
    mine = json.loads(cli.run("secret", "list", "--json", token=owner).stdout)
    assert {"id": "for-agent", "type": "application/octet-stream", "name": "Mail key",
            "delegated_to": "agent-7", "delegated_by": None} in mine
    theirs = cli.run("secret", "list", "--json", token=agent).stdout
    assert json.loads(theirs) == [
        {"id": "own-key", "type": "application/octet-stream", "name": None,
         "delegated_to": None, "delegated_by": None},
        {"id": "for-agent", "type": "application/octet-stream", "name": "Mail key",
         "delegated_to": "agent-7", "delegated_by": "olive"},
    ]
    lines = cli.run("secret", "list", token=agent).stdout.splitlines()
    assert lines == [
        "own-key\tapplication/octet-stream\t-\t-\t-",
        "for-agent\tapplication/octet-stream\tMail key\tagent-7\tolive",
    ]
    # oauth2 list keeps its four fields and shows only my own OAuth credentials.
    assert json.loads(cli.run("oauth2", "list", "--json", token=agent).stdout) == []
    cli.run("secret", "delete", "--id", "for-agent", "--delegated-to", "agent-7", token=owner)
    after = json.loads(cli.run("secret", "list", "--json", token=agent).stdout)
    assert [row["id"] for row in after] == ["own-key"]


def test_an_agent_asks_a_person_for_a_secret_through_the_cli(cli: Cli) -> None:
    from tests.support.leak_watch import remember_secret

    key = "sk-cli-0123456789abcdef"
    remember_secret(key)
    agent = cli.mint("agent-5", "--grant", "allow-all")
    paula = cli.mint("paula")
    watcher = subprocess.Popen(
        cli.argv("prompts", "--room", ROOM, "--json"),
        env=dict(cli.env, ROOMSECRETS_TOKEN=paula),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert watcher.stderr is not None and watcher.stdout is not None
        assert "connected as paula" in watcher.stderr.readline()
        asking = subprocess.Popen(
            cli.argv("secret", "request", "--room", ROOM, "--from-participant-id", "paula",
                     "--url", "https://api.example.com/v1", "--timeout", "60"),
            env=dict(cli.env, ROOMSECRETS_TOKEN=agent),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        shown = json.loads(watcher.stdout.readline())
        assert {k: shown[k] for k in ("kind", "from_participant_id", "url", "type",
                                      "delegate_to")} == {
            "kind": "secret", "from_participant_id": "agent-5",
            "url": "https://api.example.com/v1", "type": "text/plain", "delegate_to": "agent-5"}
        cli.run("secret", "provide", "--request-id", shown["request_id"], "--value", key,
                token=paula)
        stdout, stderr = asking.communicate(timeout=TIMEOUT)
        cli.note(["secret", "request"], stdout, stderr, True)
        assert asking.returncode == 0, stderr
        assert stdout == key
        # Stored as paula's, delegated to the agent; asked again, no prompt.
        theirs = json.loads(cli.run("secret", "list", "--json", token=agent).stdout)
        assert [(r["name"], r["delegated_by"]) for r in theirs] == [
            ("https://api.example.com/v1", "paula")]
        again = cli.run("secret", "request", "--from-participant-id", "paula",
                        "--url", "https://api.example.com/v1", token=agent, prints_secret=True)
        assert again.stdout == key
        # A rejected request: exit 1, one line.
        other = subprocess.Popen(
            cli.argv("secret", "request", "--room", ROOM, "--from-participant-id", "paula",
                     "--url", "https://other.example/", "--timeout", "60"),
            env=dict(cli.env, ROOMSECRETS_TOKEN=agent),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        second = json.loads(watcher.stdout.readline())
        cli.run("secret", "reject", "--request-id", second["request_id"], token=paula)
        stdout, stderr = other.communicate(timeout=TIMEOUT)
        cli.note(["secret", "request"], stdout, stderr, False)
        assert other.returncode == 1 and stdout == ""
        # The waiting notice, then one error line.
        assert stderr.splitlines()[-1] == (
            "roomsecrets: error: the secret request was rejected: user_cancelled "
            "(request_rejected)"), stderr
        assert "Traceback" not in stderr
        # The default grant asks nobody: refused before any prompt.
        plain = cli.mint("agent-6")
        denied = cli.run("secret", "request", "--from-participant-id", "paula",
                         "--url", "https://api.example.com/v1", token=plain, check=False)
        assert "no secret rule matches" in one_error_line(denied)
    finally:
        watcher.terminate()
        rest_out, rest_err = watcher.communicate(timeout=10)
        cli.note(["prompts"], rest_out, rest_err, False)


def test_an_agent_asks_for_a_credential_kept_for_another_agent(
    cli: Cli, provider: FakeProvider
) -> None:
    """``oauth2 request --delegate-to``: the prompt says whom it is kept for; the delegate
    gets it with ``oauth2 get``; the asker cannot take it; the owner reads it."""
    agent = cli.mint("agent-7", "--grant", "allow-all")
    worker = cli.mint("worker-7", "--grant", "allow-all")
    quinn = cli.mint("quinn", "--grant", "allow-all")
    prompts = Prompts(cli, quinn, "--json")
    try:
        asking = start_request(
            cli, agent, "--from-participant-id", "quinn", *oauth_flags(provider),
            "--delegate-to", "worker-7", "--timeout", "30",
        )
        prompt = json.loads(prompts.next_line())
        assert (prompt["from_participant_id"], prompt["delegate_to"]) == ("agent-7", "worker-7")
        status, _, _ = approve_via_callback(prompt["authorization_url"])
        assert status == 200
        code, token, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert code == 0, stderr
    token = token.strip()
    got = cli.run("oauth2", "get", "--delegated-by", "quinn", *oauth_flags(provider),
                  token=worker, prints_secret=True)
    assert got.stdout.strip() == token
    taken = cli.run("oauth2", "get", "--delegated-by", "quinn", "--delegated-to", "worker-7",
                    *oauth_flags(provider), token=agent, check=False)
    assert taken.returncode == 1
    assert "only quinn may get a credential of theirs" in one_error_line(taken)
    own = cli.run("oauth2", "get", "--delegated-by", "quinn", "--delegated-to", "worker-7",
                  *oauth_flags(provider), token=quinn, prints_secret=True)
    assert own.stdout.strip() == token
    [row] = json.loads(cli.run("oauth2", "list", "--json", token=quinn).stdout)
    assert row["delegated_to"] == "worker-7"
