"""The approval page with a provider we did not write: ``oidc-provider`` 8.8.1 from npm,
started as tests/interop starts it, with its built-in devInteractions login and consent
pages. A person approves (or cancels at the provider) in headless Chromium; the agent
gets a token the provider accepts (or a rejection).

The provider and the room server live for this module (starting node takes a moment);
each test uses a client of its own, so neither sees the other's credential or grant.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from roomsecrets.core.errors import RequestRejected
from roomsecrets.core.grants import SecretsGrant
from tests.interop.conftest import LONG_TTL, OidcProvider, provider_config
from tests.support import leak_watch

from .kit import AGENT, AGENT_NAME, PERSON, SCREENSHOTS, RoomServer

expect: Any = pytest.importorskip("playwright.sync_api").expect

CONNECTED = re.compile(r"^Connected")
#: One client per test (public, PKCE only), registered with the room server's callback.
APPROVE_CLIENT = "approval-page-app"
CANCEL_CLIENT = "approval-page-cancel"
SCOPES = ["mail.read", "mail.send"]
#: The account the person signs in as at the provider (devInteractions takes any login).
PROVIDER_LOGIN = "alice.at.provider"


class Setup:
    """The room server, the provider that knows its callback, and the agent's client."""

    def __init__(self, server: RoomServer, provider: OidcProvider) -> None:
        self.server = server
        self.provider = provider
        self.agent = server.client(
            server.token(AGENT, name=AGENT_NAME, grant=SecretsGrant.allow_all())
        )

    @property
    def provider_host(self) -> str:
        """The provider's host and port, as the page shows them."""
        return self.provider.authorization_endpoint.split("/")[2]

    def ask(self, client_id: str) -> concurrent.futures.Future[str]:
        """The agent asks the person for a token of ``client_id`` (on the server's loop)."""
        return self.server.submit(
            self.agent.request_oauth_token(
                client_id=client_id,
                authorization_endpoint=self.provider.authorization_endpoint,
                token_endpoint=self.provider.token_endpoint,
                scopes=SCOPES,
                from_participant_id=PERSON,
                timeout=60,
            )
        )

    def code_exchanges(self, client_id: str) -> list[Any]:
        return self.provider.token_requests(client_id, "authorization_code")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    server = RoomServer(tmp_path_factory.mktemp("oidc-page-store"))
    callback = server.url + "/oauth/callback"
    # The interop suite's configuration (its introspecting resource server included),
    # plus this module's two clients.
    config = provider_config(callback)
    config["clients"] += [
        {
            "client_id": client_id,
            "token_endpoint_auth_method": "none",
            "redirect_uris": [callback],
            "access_token_ttl": LONG_TTL,
        }
        for client_id in (APPROVE_CLIENT, CANCEL_CLIENT)
    ]
    provider = OidcProvider(config, tmp_path_factory.mktemp("oidc-page-provider"))
    try:
        server.start()
        found = Setup(server, provider)
        try:
            yield found
        finally:
            server.run(found.agent.close())
            # Every token and code the provider issued joins the session's leak scan.
            provider.log()
    finally:
        provider.stop()
        server.close()


@pytest.fixture
def offline_context(context: Any) -> Any:
    """The browser context, kept on 127.0.0.1: the devInteractions pages @import a web
    font from fonts.googleapis.com, which must neither slow nor break the test."""

    def route(request_route: Any) -> None:
        if request_route.request.url.startswith("http://127.0.0.1:"):
            request_route.continue_()
        else:
            request_route.abort()

    context.route("**/*", route)
    return context


def open_page(context: Any, setup: Setup) -> Any:
    page = context.new_page()
    page.goto(setup.server.login_url())
    expect(page.locator("#connection")).to_have_text(CONNECTED)
    return page


def prompt_item(page: Any, setup: Setup) -> Any:
    return page.get_by_role("listitem").filter(has_text=AGENT).filter(
        has_text=setup.provider_host
    )


def approve_in_new_tab(context: Any, item: Any, setup: Setup) -> Any:
    """Click Approve; the provider's login page, in the tab that opens."""
    with context.expect_page() as opened:
        item.get_by_role("button", name="Approve", exact=True).click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url.startswith(setup.provider.issuer + "/interaction/"), tab.url
    expect(tab.get_by_role("heading", name="Sign-in")).to_be_visible()
    return tab


def test_approve_signs_in_at_oidc_provider_and_the_agent_gets_a_token_it_accepts(
    offline_context: Any, setup: Setup
) -> None:
    context = offline_context
    page = open_page(context, setup)
    asking = setup.ask(APPROVE_CLIENT)
    item = prompt_item(page, setup)
    expect(item).to_have_count(1)
    expect(item).to_contain_text(AGENT_NAME)
    expect(item.locator(".host")).to_have_text(setup.provider_host)
    expect(item).to_contain_text(APPROVE_CLIENT)
    expect(item).to_contain_text("mail.read mail.send")
    assert not asking.done()

    tab = approve_in_new_tab(context, item, setup)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / "oidc-provider-login.png"), full_page=True)
    # devInteractions' login form: fields `login` and `password` (any values),
    # lib/views/login.js of oidc-provider.
    tab.locator("input[name=login]").fill(PROVIDER_LOGIN)
    tab.locator("input[name=password]").fill("any password")
    tab.get_by_role("button", name="Sign-in").click()
    # Its consent form (lib/views/interaction.js) lists the scopes asked for.
    expect(tab.get_by_role("heading", name="Authorize")).to_be_visible()
    expect(tab.locator(".login-card")).to_contain_text("mail.read")
    expect(tab.locator(".login-card")).to_contain_text("mail.send")
    tab.screenshot(path=str(SCREENSHOTS / "oidc-provider-consent.png"), full_page=True)
    tab.get_by_role("button", name="Continue").click()

    # The provider redirected to our callback, which completed the request.
    expect(tab.get_by_role("heading", name="Approved")).to_be_visible()
    assert tab.url.startswith(setup.server.url + "/oauth/callback?"), tab.url
    answer = parse_qs(urlsplit(tab.url).query)
    leak_watch.remember_secret(answer["code"][0])
    assert answer["iss"] == [setup.provider.issuer]  # RFC 9207: the provider names itself

    access_token = asking.result(20)
    leak_watch.remember_secret(access_token)
    # The provider accepts the token (RFC 7662 introspection, as a resource server),
    # for this client, these scopes and the account the person signed in with.
    found = setup.provider.introspect(access_token)
    assert found["active"] is True
    assert found["client_id"] == APPROVE_CLIENT
    assert found["sub"] == PROVIDER_LOGIN
    assert set(found["scope"].split()) == set(SCOPES)
    [exchange] = setup.code_exchanges(APPROVE_CLIENT)
    assert exchange["status"] == 200 and exchange["auth_method"] == "none"

    expect(item).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("ended at the provider")
    credential = page.get_by_role("listitem").filter(has_text=f"{APPROVE_CLIENT} @ 127.0.0.1")
    expect(credential).to_have_count(1)
    expect(credential).to_contain_text(f"OAuth access · delegated to {AGENT}")
    page.bring_to_front()
    page.screenshot(path=str(SCREENSHOTS / "approval-after-oidc-provider.png"), full_page=True)


def test_cancel_at_oidc_providers_login_rejects_the_agents_request(
    offline_context: Any, setup: Setup
) -> None:
    context = offline_context
    page = open_page(context, setup)
    asking = setup.ask(CANCEL_CLIENT)
    item = prompt_item(page, setup)
    expect(item).to_have_count(1)

    tab = approve_in_new_tab(context, item, setup)
    # devInteractions' abort link (/interaction/{uid}/abort) redirects to the client
    # with error=access_denied (RFC 6749 §4.1.2.1).
    tab.get_by_role("link", name="[ Cancel ]").click()
    expect(tab.get_by_role("heading", name="Request declined")).to_be_visible()
    assert tab.url.startswith(setup.server.url + "/oauth/callback?"), tab.url
    assert "error=access_denied" in tab.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / "oidc-provider-cancelled.png"))

    with pytest.raises(RequestRejected) as rejected:
        asking.result(20)
    assert rejected.value.error == "access_denied"
    expect(item).to_have_count(0)
    # The server tells the page only that the prompt ended, not how: it cannot say
    # "cancelled" here, only that the request went to the provider.
    expect(page.locator("#notice")).to_contain_text(f"{AGENT_NAME} ({AGENT})")
    expect(page.get_by_text("No requests are waiting for you.")).to_be_visible()
    # Nothing was exchanged or stored for this client.
    assert setup.code_exchanges(CANCEL_CLIENT) == []
    expect(page.get_by_role("listitem").filter(has_text=CANCEL_CLIENT)).to_have_count(0)
