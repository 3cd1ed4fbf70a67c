"""docs/grants.md states only what holds: every JSON example is a grant, and each
example decides as the text around it says."""

from __future__ import annotations

import json
import pathlib
import re

from roomsecrets.core.grants import (
    SecretsGrant,
    check_oauth_request,
    check_secret_request,
    glob_match,
)

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "grants.md"
BLOCKS = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
GOOGLE = dict(authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
              token_endpoint="https://oauth2.googleapis.com/token")


def grants() -> list[SecretsGrant]:
    return [SecretsGrant.from_dict(json.loads(block)) for block in BLOCKS]


def test_every_json_example_is_a_grant():
    assert len(grants()) == 6


def test_the_first_two_are_the_default_and_allow_all():
    default, allow_all, *_ = grants()
    assert default == SecretsGrant()
    assert allow_all == SecretsGrant.allow_all()


def test_the_google_example_allows_read_only_mail_from_anyone():
    google = grants()[2]
    ask = dict(client_id="mailbot-app", **GOOGLE)
    readonly = ["https://www.googleapis.com/auth/gmail.readonly"]
    assert check_oauth_request(google, target="anyone", scopes=readonly, **ask).allowed
    assert not check_oauth_request(
        google, target="anyone", scopes=["https://www.googleapis.com/auth/gmail.send"], **ask
    ).allowed
    denied = check_oauth_request(google, target="x", client_id="other", scopes=readonly, **GOOGLE)
    assert "rule 0 client_id 'other' does not match 'mailbot-app'" in denied.reason


def test_the_issuer_example_allows_alice_and_bob_through_that_issuer_only():
    example = grants()[3]
    ask = dict(client_id="any", authorization_endpoint="https://login.example.com/a",
               token_endpoint="https://login.example.com/t", scopes=["files.read"])
    assert check_oauth_request(example, target="alice", issuer="https://login.example.com",
                               **ask).allowed
    assert not check_oauth_request(example, target="carol",
                                   issuer="https://login.example.com", **ask).allowed
    assert not check_oauth_request(example, target="alice", **ask).allowed  # no issuer
    assert not example.manage_own_secrets and not example.answer_prompts


def test_the_mcp_example_allows_any_authorization_server_of_those_resources_only():
    example = grants()[4]
    ask = dict(target="anyone", client_id="registered-by-the-server",
               authorization_endpoint="https://auth.other.example/authorize",
               token_endpoint="https://auth.other.example/token", scopes=["mcp:tools"],
               issuer="https://auth.other.example")
    assert check_oauth_request(example, resource="https://mcp.example.com/mcp", brokered=True,
                               **ask).allowed
    assert not check_oauth_request(example, resource="https://evil.example/mcp",
                                   brokered=True, **ask).allowed
    # "Nothing else": not the explicit flow, even with an allowed resource beside it
    # (the agent would name the provider and the client).
    denied = check_oauth_request(example, resource="https://mcp.example.com/mcp", **ask)
    assert "names only a resource: it allows only brokered requests" in denied.reason
    assert not check_oauth_request(example, **ask).allowed


def test_a_rule_naming_a_provider_and_no_resource_allows_no_brokered_request():
    from roomsecrets.core.grants import check_oauth_request_before_discovery

    grant = SecretsGrant.from_dict({"oauth": [{"issuer": "https://accounts.google.com",
                                               "client_id": "my-app"}]})
    decision = check_oauth_request_before_discovery(
        grant, target="alice", client_id=None, issuer=None, authorization_endpoint=None,
        token_endpoint=None, scopes=None, resource="http://127.0.0.1:6379/", brokered=True)
    assert "allows no brokered request" in decision.reason


def test_the_pattern_table_holds():
    assert glob_match("mail.read", "mail.*") and glob_match("mail.", "mail.*")
    assert not glob_match("mail", "mail.*")
    assert not glob_match("Mail-App", "mail-app")
    assert glob_match("agent-1", "agent-?") and not glob_match("agent-10", "agent-?")
    assert glob_match("https://evil.test/x.example.com/", "https://*.example.com/*")


def test_the_denial_example_is_the_reason_the_check_gives():
    grant = SecretsGrant.from_dict({"oauth": [{"scopes": ["mail.read"]}]})
    reason = check_oauth_request(grant, target="alice", client_id="c", scopes=["mail.send"],
                                 **GOOGLE).reason
    assert reason in DOC.read_text(encoding="utf-8")


def test_the_secret_rule_example_lets_the_agent_ask_alice_for_that_apis_key_only():
    grant = grants()[5]
    ask = dict(url="https://api.example.com/v2", type="text/plain")
    assert check_secret_request(grant, target="alice", **ask).allowed
    assert not check_secret_request(grant, target="bob", **ask).allowed
    assert not check_secret_request(
        grant, target="alice", url="https://api.example.com/v2", type="application/json"
    ).allowed
    denied = check_secret_request(grant, target="alice", url="https://evil.example/",
                                  type="text/plain")
    assert denied.reason == (
        "no secret rule matches: rule 0 url 'https://evil.example/' does not match "
        "'https://api.example.com/*'"
    )
    assert "no secret rule matches: rule 0 url 'https://evil.example/' does not match " \
        "'https://api.example.com/*'" in " ".join(DOC.read_text(encoding="utf-8").split())
    assert not grant.oauth, "the example asks for no OAuth token"
