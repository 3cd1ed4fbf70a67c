"""The approval page in headless Chromium: a person approves, rejects, watches a
prompt time out, deletes a secret, survives a reload and a server restart."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from roomsecrets.adapters.server.approval import login_url
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core.errors import RequestRejected, RequestTimedOut
from roomsecrets.dev_provider import OAuthProvider
from tests.support import leak_watch

from .kit import (
    AGENT,
    AGENT_NAME,
    PERSON,
    ROOM,
    SCREENSHOTS,
    Agent,
    RoomServer,
    provider_host,
)

expect: Any = pytest.importorskip("playwright.sync_api").expect

CONNECTED = re.compile(r"^Connected")


def open_page(context: Any, server: RoomServer, console: Optional[list[str]] = None) -> Any:
    """The page, opened with the person's sign-in URL; ``console`` collects its messages."""
    page = context.new_page()
    if console is not None:
        page.on("console", lambda message: console.append(message.text))
    page.goto(server.login_url())
    expect(page.locator("#connection")).to_have_text(CONNECTED)
    return page


def prompt_item(page: Any, provider: OAuthProvider) -> Any:
    return page.get_by_role("listitem").filter(has_text=AGENT).filter(
        has_text=provider_host(provider)
    )


def result(future: concurrent.futures.Future[Any], timeout: float = 20.0) -> Any:
    return future.result(timeout)


def test_approve_opens_the_provider_and_the_agent_gets_its_token(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    requests: list[Any] = []
    context.on("request", lambda request: requests.append(request))
    console: list[str] = []
    login = room_server.login_url()
    token = login.split("#token=")[1]
    page = context.new_page()
    page.on("console", lambda message: console.append(message.text))
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(login)
    expect(page.locator("#connection")).to_have_text(CONNECTED)
    # The token came in the fragment and is gone from the address bar.
    assert "#" not in page.url and "token" not in page.url
    expect(page.get_by_text("No requests are waiting for you.")).to_be_visible()
    expect(page.get_by_text("You have no stored secrets.")).to_be_visible()

    asking = agent.request()
    item = prompt_item(page, provider)
    expect(item).to_have_count(1)
    expect(item).to_contain_text(AGENT_NAME)
    expect(item.locator(".host")).to_have_text(provider_host(provider))
    expect(item).to_contain_text("mail-app")
    expect(item).to_contain_text("mail.read mail.send")
    expect(item.locator(".time-left")).to_have_text(re.compile(r"^(\d+:\d\d min|\d+ s)$"))
    assert not asking.done()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "approval-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 780})
    page.screenshot(path=str(SCREENSHOTS / "approval-phone-360.png"), full_page=True)
    # Usable at phone width: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    with context.expect_page() as opened:
        item.get_by_role("button", name="Approve", exact=True).click()
    provider_tab = opened.value
    provider_tab.wait_for_load_state()
    # The provider (who signs the person in and approves) redirected to the
    # server's /oauth/callback, which completed the request.
    assert provider_tab.url.startswith(room_server.url + "/oauth/callback?")
    expect(provider_tab.get_by_role("heading", name="Approved")).to_be_visible()

    access_token = result(asking)
    assert provider.is_active(access_token)
    expect(item).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("ended at the provider")
    credential = page.get_by_role("listitem").filter(has_text=f"delegated to {AGENT}")
    expect(credential).to_have_count(1)
    expect(credential).to_contain_text("OAuth access")
    # Nothing the page does trips its own Content-Security-Policy.
    assert not [text for text in console if "Content Security Policy" in text]
    # The participant token never rode in a URL (the WebSocket's included), and the
    # provider got no Referer.
    assert requests and not [r.url for r in requests if token in r.url]
    assert sockets == [room_server.url.replace("http://", "ws://") + f"/rooms/{ROOM}/ws"]
    to_provider = [r for r in requests if r.url.startswith(provider.authorization_endpoint)]
    assert len(to_provider) == 1
    assert "referer" not in to_provider[0].all_headers()
    api_calls = [r for r in requests if "/rooms/" in r.url and r.method == "POST"]
    assert api_calls and all(
        r.all_headers().get("authorization") == f"Bearer {token}" for r in api_calls
    )


def test_reject_ends_the_agents_request_with_user_cancelled(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    page = open_page(context, room_server)
    asking = agent.request()
    item = prompt_item(page, provider)
    item.get_by_role("button", name="Reject", exact=True).click()
    with pytest.raises(RequestRejected) as rejected:
        result(asking)
    assert rejected.value.error == "user_cancelled"
    expect(item).to_have_count(0)
    expect(page.locator("#notice")).to_have_text(
        f"You rejected the request from {AGENT_NAME} ({AGENT})."
    )
    expect(page.get_by_text("No requests are waiting for you.")).to_be_visible()
    assert provider.authorization_requests == []


def test_a_prompt_that_times_out_disappears(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    page = open_page(context, room_server)
    asking = agent.request(timeout=3)
    item = prompt_item(page, provider)
    expect(item).to_have_count(1)
    with pytest.raises(RequestTimedOut):
        result(asking)
    expect(item).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("timed out")


def test_deleting_a_secret_asks_first_then_removes_it(
    context: Any, room_server: RoomServer
) -> None:
    person = room_server.client(room_server.person_token())
    try:
        room_server.run(
            person.set_secret(
                secret_id="calendar", data=b"abc", type="text/plain", name="Calendar key"
            )
        )
        room_server.run(person.set_secret(secret_id="notes", data=b"x", name="Notes key"))
    finally:
        room_server.run(person.close())
    page = open_page(context, room_server)
    row = page.get_by_role("listitem").filter(has_text="Calendar key")
    expect(row).to_contain_text("text/plain · not delegated")

    # Cancel keeps it.
    row.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Calendar key")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(row).to_have_count(1)

    row.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "approval-delete-confirm.png"))
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(row).to_have_count(0)
    expect(page.get_by_role("listitem").filter(has_text="Notes key")).to_have_count(1)
    expect(page.locator("#notice")).to_have_text("Deleted “Calendar key”.")

    person = room_server.client(room_server.person_token())
    try:
        left = room_server.run(person.list_user_secrets())
    finally:
        room_server.run(person.close())
    assert [info.id for info in left] == ["notes"]


def test_a_reload_keeps_the_sign_in_and_the_waiting_prompt(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    page = open_page(context, room_server)
    asking = agent.request()
    expect(prompt_item(page, provider)).to_have_count(1)
    page.reload()
    # Signed in from this tab's storage; the prompt survived the dropped socket.
    expect(page.locator("#connection")).to_have_text(CONNECTED)
    item = prompt_item(page, provider)
    expect(item).to_have_count(1)
    assert not asking.done()
    item.get_by_role("button", name="Reject", exact=True).click()
    with pytest.raises(RequestRejected):
        result(asking)


def test_the_page_recovers_after_the_server_restarts(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    page = open_page(context, room_server)
    room_server.stop()
    expect(page.locator("#connection")).to_contain_text("Disconnected from the server.")
    expect(page.locator("#connection")).to_contain_text("Reconnecting in")
    expect(page.locator("#requests-state")).to_have_text(
        "Not connected: requests reach this page again once it reconnects."
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "approval-disconnected.png"))
    room_server.start()
    expect(page.locator("#connection")).to_have_text(CONNECTED, timeout=20_000)
    asking = agent.request()
    item = prompt_item(page, provider)
    expect(item).to_have_count(1)
    item.get_by_role("button", name="Reject", exact=True).click()
    with pytest.raises(RequestRejected):
        result(asking)


def test_without_a_token_the_page_says_how_to_sign_in(
    context: Any, room_server: RoomServer
) -> None:
    page = context.new_page()
    page.goto(room_server.url + "/approve")
    expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Signed out")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)


def test_an_expired_or_forged_token_signs_the_page_out(
    context: Any, room_server: RoomServer
) -> None:
    page = context.new_page()
    # Signed with another key: the page cannot tell, the server's first-frame check can.
    forged = mint_participant_token(b"k" * 32, room=ROOM, participant_id=PERSON, ttl=600)
    page.goto(login_url(room_server.url, forged))
    expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
    expect(page.locator("#signed-out-reason")).to_contain_text("not valid any more")
    assert page.evaluate("sessionStorage.length") == 0


def test_keyboard_alone_reaches_approve_with_a_visible_focus(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    page = open_page(context, room_server)
    asking = agent.request()
    approve = prompt_item(page, provider).get_by_role("button", name="Approve", exact=True)
    expect(approve).to_be_visible()
    for _ in range(10):
        page.keyboard.press("Tab")
        if approve.evaluate("button => button === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Approve button")
    outline = approve.evaluate("button => getComputedStyle(button).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # on Reject
    with pytest.raises(RequestRejected):
        result(asking)


def serious_or_critical(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_or_critical_violations(
    browser: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    axe = Path(__file__).resolve().parents[2] / "node_modules/axe-core/axe.min.js"
    if not axe.exists():
        pytest.skip("axe-core is not installed (npm ci)")
    person = room_server.client(room_server.person_token())
    try:
        room_server.run(person.set_secret(secret_id="k", data=b"x", name="A key"))
    finally:
        room_server.run(person.close())
    # Only this test bypasses the page's CSP, to inject axe.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    try:
        page = open_page(context, room_server)
        asking = agent.request()
        expect(prompt_item(page, provider)).to_have_count(1)
        page.add_script_tag(path=str(axe))
        assert serious_or_critical(page) == []
        page.set_viewport_size({"width": 360, "height": 780})
        assert serious_or_critical(page) == []
        # The delete confirmation, open.
        page.get_by_role("listitem").filter(has_text="A key").get_by_role(
            "button", name="Delete", exact=True
        ).click()
        expect(page.get_by_role("dialog")).to_be_visible()
        assert serious_or_critical(page) == []
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_be_hidden()
        prompt_item(page, provider).get_by_role("button", name="Reject", exact=True).click()
        with pytest.raises(RequestRejected):
            result(asking)
        # Signed out.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
        assert serious_or_critical(page) == []
    finally:
        context.close()


def test_a_redirect_to_somewhere_else_is_pointed_out_before_approving(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    provider.register_client(
        "mail-app",
        redirect_uris=[room_server.url + "/oauth/callback", "https://app.example/cb"],
        scopes=("mail.read", "mail.send"),
    )
    page = open_page(context, room_server)
    ours = agent.request()
    theirs = agent.request(redirect_uri="https://app.example/cb")
    items = page.get_by_role("listitem").filter(has_text=AGENT)
    expect(items).to_have_count(2)
    warned = items.filter(has_text="sends you to app.example, not to this server")
    expect(warned).to_have_count(1)
    for item in (warned, items.filter(has_not_text="not to this server")):
        item.get_by_role("button", name="Reject", exact=True).click()
    for asking in (ours, theirs):
        with pytest.raises(RequestRejected):
            result(asking)


def test_a_credential_kept_for_another_participant_says_whom_before_approving(
    context: Any, room_server: RoomServer, provider: OAuthProvider, agent: Agent
) -> None:
    page = open_page(context, room_server)
    plain = agent.request()
    kept = agent.request(delegate_to="worker-9")
    items = page.get_by_role("listitem").filter(has_text=AGENT)
    expect(items).to_have_count(2)
    other = items.filter(has_text="worker-9")
    expect(other).to_have_count(1)
    expect(other.locator(".delegate")).to_have_text("worker-9")
    expect(other.locator(".delegate-row")).to_be_visible()
    # Kept for the asker itself: no row (the card already names the asker).
    mine = items.filter(has_not_text="worker-9")
    expect(mine.locator(".delegate-row")).to_be_hidden()
    for item in (other, mine):
        item.get_by_role("button", name="Reject", exact=True).click()
    for asking in (plain, kept):
        with pytest.raises(RequestRejected):
            result(asking)


def test_an_mcp_prompt_names_the_mcp_server_where_to_sign_in_and_the_scopes(
    context: Any, room_server: RoomServer, agent: Agent
) -> None:
    pytest.importorskip("mcp")
    from tests.support.mcp_server import McpServer

    with McpServer(user=PERSON) as mcp:
        page = open_page(context, room_server)
        asking = room_server.submit(
            agent.client.request_oauth_token(resource=mcp.url, from_participant_id=PERSON,
                                             timeout=60)
        )
        host = mcp.url.split("//", 1)[1].split("/", 1)[0]
        item = page.get_by_role("listitem").filter(has_text=AGENT)
        expect(item.locator(".mcp-server")).to_have_text(f"Test MCP ({host})")
        expect(item.locator(".issuer-host")).to_have_text(host)
        expect(item.locator(".scopes")).to_have_text("mcp:tools")
        # The client is the room server's own registration: not shown.
        expect(item.locator(".client-row")).to_be_hidden()
        item.get_by_role("button", name="Approve", exact=True).click()
        token = result(asking)
        assert mcp.token_info(token)["user"] == PERSON  # type: ignore[index]


def test_the_url_token_mint_login_url_prints_signs_the_page_in(
    context: Any, tmp_path: Path
) -> None:
    key = "a-signing-key-for-this-test-only-" + "x" * 16
    server = RoomServer(tmp_path / "store", key=key.encode())
    server.start()
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
        environ["ROOMSECRETS_JWT_KEY"] = key
        environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        done = subprocess.run(
            [sys.executable, "-m", "roomsecrets", "token", "mint", "--room", ROOM,
             "--participant-id", PERSON, "--name", "Alice", "--login-url",
             "--server", server.url],
            env=environ, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        url = done.stdout.strip()
        leak_watch.remember_secret(url.split("#token=")[1])
        page = context.new_page()
        page.goto(url)
        expect(page.locator("#connection")).to_have_text(CONNECTED)
        expect(page.locator("#who")).to_have_text(f"Signed in as Alice ({PERSON}) · room {ROOM}")
        assert page.url == server.url + "/approve"
    finally:
        server.close()


def secret_item(page: Any) -> Any:
    return page.get_by_role("listitem").filter(has_text=AGENT).filter(
        has_text="asks you to type in a secret"
    )


def test_a_secret_prompt_takes_the_secret_in_a_password_field_and_stores_it(
    context: Any, room_server: RoomServer, agent: Agent
) -> None:
    key = "sk-page-0123456789abcdef"
    leak_watch.remember_secret(key)
    console: list[str] = []
    page = open_page(context, room_server, console)
    asking = agent.ask_secret()
    item = secret_item(page)
    expect(item).to_have_count(1)
    expect(item.locator(".host")).to_have_text("api.example.com")
    expect(item.locator(".url")).to_have_text("https://api.example.com/v1")
    expect(item.locator(".type")).to_have_text("text/plain")
    expect(item.locator(".delegate")).to_have_text(AGENT)
    field = item.get_by_label("Secret for api.example.com")
    assert field.get_attribute("type") == "password"
    # Provide with nothing typed does nothing: the request stays open.
    item.get_by_role("button", name="Provide", exact=True).click()
    expect(item).to_have_count(1)
    assert not asking.done()
    field.fill(key)
    field.press("Enter")
    assert result(asking) == key.encode()
    expect(item).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text(
        f"You gave {AGENT_NAME} ({AGENT}) the secret"
    )
    stored = page.get_by_role("listitem").filter(has_text=f"delegated to {AGENT}")
    expect(stored).to_have_count(1)
    expect(stored).to_contain_text("https://api.example.com/v1")
    # The secret is nowhere on the page once sent, and nothing tripped the CSP.
    assert key not in page.content()
    assert not [text for text in console if "Content Security Policy" in text]


def test_rejecting_a_secret_prompt_ends_the_agents_request(
    context: Any, room_server: RoomServer, agent: Agent
) -> None:
    page = open_page(context, room_server)
    asking = agent.ask_secret()
    item = secret_item(page)
    item.get_by_role("button", name="Reject", exact=True).click()
    with pytest.raises(RequestRejected) as rejected:
        result(asking)
    assert rejected.value.error == "user_cancelled"
    assert "secret request" in str(rejected.value)
    expect(item).to_have_count(0)
    expect(page.locator("#notice")).to_have_text(
        f"You rejected the request from {AGENT_NAME} ({AGENT})."
    )


def test_axe_finds_no_serious_or_critical_violations_on_a_secret_prompt(
    browser: Any, room_server: RoomServer, agent: Agent
) -> None:
    axe = Path(__file__).resolve().parents[2] / "node_modules/axe-core/axe.min.js"
    if not axe.exists():
        pytest.skip("axe-core is not installed (npm ci)")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    try:
        page = open_page(context, room_server)
        asking = agent.ask_secret()
        item = secret_item(page)
        expect(item).to_have_count(1)
        page.add_script_tag(path=str(axe))
        assert serious_or_critical(page) == []
        page.set_viewport_size({"width": 360, "height": 780})
        assert serious_or_critical(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        item.get_by_role("button", name="Reject", exact=True).click()
        with pytest.raises(RequestRejected):
            result(asking)
    finally:
        context.close()
