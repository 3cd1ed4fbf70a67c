from urllib.parse import parse_qsl, urlsplit

import pytest

from roomsecrets.core.errors import InsecureEndpointError, InvalidInput
from roomsecrets.core.oauth.authorization import build_authorization_url

BASE = dict(
    authorization_endpoint="https://accounts.example.com/o/oauth2/v2/auth",
    client_id="client-1",
    redirect_uri="https://app.example.com/oauth/callback",
    state="state-123",
)


def params(url):
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def test_adds_the_rfc6749_and_rfc7636_parameters_in_order():
    url = build_authorization_url(**BASE, scopes=["mail.read", "openid"], code_challenge="ch")
    assert params(url) == [
        ("response_type", "code"),
        ("client_id", "client-1"),
        ("redirect_uri", "https://app.example.com/oauth/callback"),
        ("scope", "mail.read openid"),
        ("state", "state-123"),
        ("code_challenge", "ch"),
        ("code_challenge_method", "S256"),
    ]
    assert url.startswith("https://accounts.example.com/o/oauth2/v2/auth?")


def test_scopes_are_space_joined_with_percent_20():
    url = build_authorization_url(**BASE, scopes=["a", "b"])
    assert "scope=a%20b" in url


def test_existing_query_in_endpoint_is_kept_first():
    url = build_authorization_url(
        **{**BASE, "authorization_endpoint": "https://as.example/auth?tenant=t1&x="}
    )
    assert params(url)[:2] == [("tenant", "t1"), ("x", "")]


def test_no_pkce_omits_challenge_and_method():
    names = [name for name, _ in params(build_authorization_url(**BASE))]
    assert "code_challenge" not in names
    assert "code_challenge_method" not in names


def test_no_scopes_omits_scope():
    assert "scope" not in dict(params(build_authorization_url(**BASE, scopes=None)))
    assert "scope" not in dict(params(build_authorization_url(**BASE, scopes=[])))


def test_extra_parameters_are_appended():
    url = build_authorization_url(
        **BASE,
        extra_params={"prompt": "consent", "access_type": "offline", "resource": "https://r/"},
    )
    assert params(url)[-3:] == [
        ("prompt", "consent"),
        ("access_type", "offline"),
        ("resource", "https://r/"),
    ]


@pytest.mark.parametrize("name", ["state", "client_id", "code_challenge_method", "scope"])
def test_extra_parameters_may_not_override_ours(name):
    with pytest.raises(InvalidInput):
        build_authorization_url(**BASE, extra_params={name: "evil"})


def test_endpoint_query_may_not_preset_our_parameters():
    with pytest.raises(InvalidInput):
        build_authorization_url(
            **{**BASE, "authorization_endpoint": "https://as.example/auth?client_id=other"}
        )


def test_extra_parameter_may_not_repeat_endpoint_query():
    with pytest.raises(InvalidInput):
        build_authorization_url(
            **{**BASE, "authorization_endpoint": "https://as.example/auth?prompt=none"},
            extra_params={"prompt": "consent"},
        )


@pytest.mark.parametrize(
    "endpoint", ["http://accounts.example.com/auth", "http://10.0.0.1/auth", "http://[fe80::1]/a"]
)
def test_plain_http_is_refused_for_non_loopback_hosts(endpoint):
    with pytest.raises(InsecureEndpointError):
        build_authorization_url(**{**BASE, "authorization_endpoint": endpoint})


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8080/auth", "http://localhost/auth", "http://[::1]:9/auth",
     "http://127.5.5.5/auth"],
)
def test_plain_http_is_allowed_for_loopback(endpoint):
    assert build_authorization_url(**{**BASE, "authorization_endpoint": endpoint})


def test_plain_http_allowed_when_explicitly_asked():
    url = build_authorization_url(
        **{**BASE, "authorization_endpoint": "http://as.internal/auth"}, allow_insecure_http=True
    )
    assert url.startswith("http://as.internal/auth?")


@pytest.mark.parametrize(
    "endpoint",
    ["", "accounts.example.com/auth", "ftp://as.example/auth", "https:///auth",
     "https://as.example/auth#frag", "https://user:pw@as.example/auth", "https://as:99999/a"],
)
def test_malformed_endpoints_are_refused(endpoint):
    with pytest.raises(InvalidInput):
        build_authorization_url(**{**BASE, "authorization_endpoint": endpoint})


@pytest.mark.parametrize("redirect", ["", "/relative/cb", "https://app.example/cb#x", None])
def test_bad_redirect_uris_are_refused(redirect):
    with pytest.raises(InvalidInput):
        build_authorization_url(**{**BASE, "redirect_uri": redirect})


def test_a_custom_scheme_redirect_is_refused():
    # The room server is the OAuth client, never a native app (RFC 8252 §7.1 does not apply).
    with pytest.raises(InvalidInput, match="redirect_uri must be an absolute http"):
        build_authorization_url(**{**BASE, "redirect_uri": "com.example.app:/oauth2redirect"})


@pytest.mark.parametrize("scopes", ["one string", ["has space"], [""], ['quo"te'], [1]])
def test_bad_scopes_are_refused(scopes):
    with pytest.raises(InvalidInput):
        build_authorization_url(**BASE, scopes=scopes)
