"""The MCP broker through ``roomsecrets serve`` and the CLI, against a real MCP server
built with the official ``mcp`` SDK (``tests/support/mcp_server.py``): an agent runs
``oauth2 request --resource URL``, the person approves through the server's callback,
and the official MCP client calls ``whoami`` with the token and gets the person."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("mcp")
pytest.importorskip("uvicorn")

from tests.adapters.server_kit import approve_via_callback
from tests.adapters.test_cli import (  # noqa: F401 - the fixtures are used by name
    ROOM,
    Cli,
    Prompts,
    cli,
    finish,
    one_error_line,
    server,
    start_request,
)
from tests.interop.test_mcp_broker import whoami
from tests.support.mcp_server import McpServer

#: Short, so that the room server's own clock sees a token expire (the refresh leeway is
#: capped at half a token's lifetime) and "after expiry" needs no 401 to know it. Not
#: shorter: a refreshed token is fresh for half of it, and the ten `oauth2 get`
#: processes below must all ask within that, or a late one rightly refreshes again. On
#: a loaded 2-core machine, ten interpreters starting took over the 1 s that 2 s gave.
LIFETIME = 12


@pytest.fixture
def mcp() -> Iterator[McpServer]:
    with McpServer(user="alice", access_token_lifetime=LIFETIME) as running:
        yield running


def refreshes(mcp: McpServer) -> int:
    return sum(r["params"].get("grant_type") == "refresh_token" for r in mcp.token_requests)


def test_oauth2_request_resource_then_the_official_client_calls_whoami_as_the_person(
    cli: Cli, mcp: McpServer  # noqa: F811 - the fixture imported above
) -> None:
    agent = cli.mint("mcp-agent", "--grant", "allow-all")
    second = cli.mint("mcp-agent-2", "--grant", "allow-all")
    alice = cli.mint("alice")
    prompts = Prompts(cli, alice)
    try:
        asking = start_request(cli, agent, "--from-participant-id", "alice",
                               "--resource", mcp.url, "--timeout", "60")
        line = prompts.next_line()
        # The person sees the MCP server by name and host, and who authorizes it.
        host = mcp.url.split("//", 1)[1].split("/", 1)[0]
        assert f"MCP server Test MCP ({host})" in line
        assert f"authorization server {host}" in line and "scopes mcp:tools" in line
        url = line.rstrip("\n").split("\t")[-1]
        status, _, page = approve_via_callback(url)
        assert status == 200 and "approved" in page
        code, token, stderr = finish(cli, asking, prints_secret=True)
        assert code == 0, stderr
        token = token.strip()
        assert asyncio.run(whoami(mcp.url, token)) == "alice"
        assert mcp.authorizations[0]["params"]["resource"] == mcp.url
        assert mcp.token_requests[0]["params"]["resource"] == mcp.url

        # A second agent: prompted, approved, and still one registration.
        asking = start_request(cli, second, "--from-participant-id", "alice",
                               "--resource", mcp.url, "--timeout", "60")
        url = prompts.next_line().rstrip("\n").split("\t")[-1]
        approve_via_callback(url)
        code, _, stderr = finish(cli, asking, prints_secret=True)
        assert code == 0, stderr
        assert len(mcp.registrations) == 1
    finally:
        prompts.stop()

    # After expiry, ten concurrent `oauth2 get --resource`: one refresh POST.
    time.sleep(LIFETIME / 2 + 0.2)  # the agent's token is now within its leeway
    before = refreshes(mcp)
    argv = ["oauth2", "get", "--room", ROOM, "--delegated-by", "alice", "--resource", mcp.url]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        done = list(pool.map(lambda _: cli.run(*argv, token=agent, prints_secret=True),
                             range(10)))
    tokens = {d.stdout.strip() for d in done}
    assert len(tokens) == 1 and token not in tokens
    assert refreshes(mcp) == before + 1
    assert mcp.token_requests[-1]["params"]["resource"] == mcp.url
    assert asyncio.run(whoami(mcp.url, tokens.pop())) == "alice"

    # Delete revokes at the MCP server's /revoke as the registered client.
    [row] = [r for r in json.loads(cli.run("oauth2", "list", "--json", token=alice).stdout)
             if r["delegated_to"] == "mcp-agent"]
    deleted = cli.run("oauth2", "delete", "--id", row["id"], "--delegated-to", "mcp-agent",
                      token=alice)
    assert "revoked at" in deleted.stderr
    assert mcp.revocations[-1]["params"]["client_id"] == mcp.registrations[0]["client_id"]
    gone = cli.run(*argv, token=agent, check=False)
    assert f"for resource {mcp.url}" in one_error_line(gone)


def test_a_denied_grant_fetches_nothing_from_the_mcp_server(
    cli: Cli, mcp: McpServer  # noqa: F811 - the fixture imported above
) -> None:
    grant = json.dumps({"version": 1, "oauth": [{"resource": "https://mcp.example.com/*"}]})
    agent = cli.mint("mcp-agent-3", "--grant", grant)
    asked = cli.run("oauth2", "request", "--room", ROOM, "--from-participant-id", "alice",
                    "--resource", mcp.url, token=agent, check=False)
    assert "resource" in one_error_line(asked) and "(grant_denied)" in asked.stderr
    # The broker's codes come back to this server only: no agent-chosen redirect URI.
    allowed = cli.mint("mcp-agent-5", "--grant", "allow-all")
    elsewhere = cli.run("oauth2", "request", "--room", ROOM, "--from-participant-id", "alice",
                        "--resource", mcp.url, "--redirect-uri", "https://attacker.example/cb",
                        token=allowed, check=False)
    assert "leave redirect_uri out" in one_error_line(elsewhere)
    assert mcp.requests == []


def test_without_client_id_or_resource_the_cli_says_which_is_needed(
    cli: Cli,  # noqa: F811 - the fixture imported above
) -> None:
    agent = cli.mint("mcp-agent-4", "--grant", "allow-all")
    done = cli.run("oauth2", "request", "--room", ROOM, "--from-participant-id", "alice",
                   token=agent, check=False)
    assert "client_id is required unless resource is given" in one_error_line(done)
    assert isinstance(done, subprocess.CompletedProcess)


def test_no_token_is_minted_for_the_servers_own_names(
    cli: Cli,  # noqa: F811 - the fixture imported above
) -> None:
    for flags in (["--participant-id", "roomsecrets:server"],
                  ["--room", "roomsecrets:server", "--participant-id", "x"]):
        done = cli.run("token", "mint", *(["--room", ROOM] if "--room" not in flags else []),
                       *flags, check=False)
        assert "reserved for the server" in one_error_line(done)
