import contextlib
import json
import secrets
import urllib.parse

import pytest

from roomsecrets.core import errors
from roomsecrets.core.oauth.token_response import parse_retry_after, parse_token_response

NOW = 1_700_000_000.0
JSON = (("Content-Type", "application/json;charset=UTF-8"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),)
HTML = (("Content-Type", "text/html"),)


def parse(body, status=200, headers=JSON, **kw):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return parse_token_response(status=status, headers=headers, body=body, now=NOW, **kw)


def test_standard_json_response():
    tokens = parse(
        {"access_token": "AT", "token_type": "bearer", "expires_in": 3600,
         "refresh_token": "RT", "scope": "read write", "id_token": "IDT", "foo": 1}
    )
    assert tokens.access_token == "AT"
    assert tokens.token_type == "Bearer"
    assert tokens.refresh_token == "RT"
    assert tokens.issued_at == NOW
    assert tokens.expires_at == NOW + 3600
    assert tokens.scopes == ("read", "write")
    assert tokens.id_token == "IDT"
    assert tokens.extra == {"foo": 1}


def test_github_form_encoded_response_with_comma_scopes():
    body = b"access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer"
    tokens = parse(body, headers=FORM)
    assert tokens.access_token == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    assert tokens.scopes == ("repo", "gist")
    assert tokens.token_type == "Bearer"


def test_form_body_is_parsed_even_when_mislabelled_text_plain():
    tokens = parse(b"access_token=AT&expires_in=60", headers=(("Content-Type", "text/plain"),))
    assert tokens.expires_at == NOW + 60


def test_salesforce_missing_expires_in_uses_default_lifetime():
    body = {"access_token": "00D!AT", "instance_url": "https://na1.salesforce.com",
            "id": "https://login.salesforce.com/id/00D/005", "token_type": "Bearer",
            "issued_at": "1278448832702", "signature": "sig"}
    assert parse(body).expires_at == NOW + 3600
    assert parse(body, default_lifetime=7200).expires_at == NOW + 7200
    assert parse(body, default_lifetime=None).expires_at is None
    assert parse(body).extra["instance_url"] == "https://na1.salesforce.com"


@pytest.mark.parametrize(
    ("raw", "lifetime"),
    [("3600", 3600.0), (" 3600 ", 3600.0), (3599.5, 3599.5), ("59.9", 59.9), (0, 0.0)],
)
def test_expires_in_as_string_float_or_int(raw, lifetime):
    assert parse({"access_token": "AT", "expires_in": raw}).expires_at == NOW + lifetime


@pytest.mark.parametrize("raw", ["soon", None, True, -5, float("nan"), "inf", [], {}])
def test_unusable_expires_in_falls_back_to_default(raw):
    body = json.dumps({"access_token": "AT", "expires_in": raw}, allow_nan=True).encode()
    assert parse(body, default_lifetime=100).expires_at == NOW + 100


def test_error_inside_http_200_is_an_oauth_error():
    with pytest.raises(errors.InvalidGrant) as info:
        parse({"error": "invalid_grant", "error_description": "Bad code"}, status=200)
    assert info.value.status == 200
    assert info.value.description == "Bad code"
    assert info.value.code == "invalid_grant"


def test_github_form_encoded_error_inside_200():
    body = b"error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired."
    with pytest.raises(errors.OAuthError) as info:
        parse(body, headers=FORM)
    assert info.value.error == "bad_verification_code"
    assert type(info.value) is errors.OAuthError


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        ("invalid_request", errors.InvalidRequest, 400),
        ("invalid_client", errors.InvalidClient, 401),
        ("invalid_grant", errors.InvalidGrant, 400),
        ("unauthorized_client", errors.UnauthorizedClient, 400),
        ("unsupported_grant_type", errors.UnsupportedGrantType, 400),
        ("invalid_scope", errors.InvalidScope, 400),
        ("access_denied", errors.AccessDenied, 400),
        ("server_error", errors.ServerError, 500),
        ("temporarily_unavailable", errors.TemporarilyUnavailable, 503),
        ("made_up_code", errors.OAuthError, 400),
    ],
)
def test_rfc6749_error_codes_map_to_classes(code, cls, status):
    with pytest.raises(cls) as info:
        parse({"error": code, "error_uri": "https://as.example/err"}, status=status)
    assert type(info.value) is cls
    assert info.value.error == code
    assert info.value.uri == "https://as.example/err"
    assert info.value.status == status


def test_html_502_page_is_retryable_provider_unavailable():
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(page, status=502, headers=HTML)
    assert info.value.retryable
    assert info.value.status == 502
    assert "nginx" not in str(info.value)


def test_html_page_with_200_is_a_bad_response():
    with pytest.raises(errors.ProviderResponseError) as info:
        parse(b"<!doctype html><p>Sign in</p>", status=200, headers=HTML)
    assert "Sign in" not in str(info.value)


def test_429_with_retry_after_seconds():
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(b"slow down", status=429, headers=(("Retry-After", "7"),))
    assert info.value.retry_after == 7.0


def test_503_with_retry_after_http_date():
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(b"", status=503, headers=(("Retry-After", "Tue, 14 Nov 2023 22:13:40 GMT"),))
    assert info.value.retry_after == pytest.approx(20.0)


def test_ten_megabyte_body_is_refused_unparsed():
    body = b'{"access_token": "' + b"A" * (10 * 1024 * 1024) + b'"}'
    with pytest.raises(errors.ResponseTooLarge) as info:
        parse(body)
    assert isinstance(info.value, errors.ProviderResponseError)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    "body",
    [b"", b"garbage", b"\xff\xfe\x00", b"[1,2]", b'"AT"', b"{not json", b'{"token_type":"bearer"}',
     b'{"access_token": ""}', b'{"access_token": 12}', b"a=b&&&=="],
)
def test_garbage_or_tokenless_bodies_are_bad_responses(body):
    with pytest.raises(errors.ProviderResponseError):
        parse(body)


def test_non_oauth_4xx_is_a_bad_response_not_an_oauth_error():
    with pytest.raises(errors.ProviderResponseError) as info:
        parse(b"Not Found", status=404, headers=(("Content-Type", "text/plain"),))
    assert info.value.status == 404


def test_granted_scope_different_from_request_is_recorded_not_an_error():
    tokens = parse({"access_token": "AT", "scope": "read"}, requested_scopes=["read", "write"])
    assert tokens.scopes == ("read",)


def test_missing_scope_means_as_requested():
    tokens = parse({"access_token": "AT"}, requested_scopes=["read", "write"])
    assert tokens.scopes == ("read", "write")


def test_scope_as_json_list_is_accepted():
    assert parse({"access_token": "AT", "scope": ["a", "b"]}).scopes == ("a", "b")


def test_refresh_response_without_refresh_token_keeps_the_old_one():
    tokens = parse({"access_token": "AT2"}, previous_refresh_token="RT1")
    assert tokens.refresh_token == "RT1"
    rotated = parse({"access_token": "AT2", "refresh_token": "RT2"}, previous_refresh_token="RT1")
    assert rotated.refresh_token == "RT2"


def _token_values():
    """Recognisable random token values, one of each kind a response carries."""
    return {
        "access_token": "AT-" + secrets.token_urlsafe(24),
        "refresh_token": "RT-" + secrets.token_urlsafe(24),
        "id_token": "IDT-" + secrets.token_urlsafe(24),
    }


def _form(fields):
    return urllib.parse.urlencode(fields).encode()


BAD_RESPONSE = errors.ProviderResponseError


def _error_responses(tokens):
    """(error class, name, status, headers, body) for every kind of error a response
    carrying ``tokens`` can produce."""
    at, rt, idt = tokens["access_token"], tokens["refresh_token"], tokens["id_token"]
    every = " ".join(tokens.values())
    echoed = f"the tokens {every} were not issued"
    cases = [
        # An OAuth error inside HTTP 200 (or 400) with the tokens alongside, sometimes
        # echoed in error, error_description or error_uri, whole or in part.
        (errors.InvalidGrant, "error in 200 beside tokens", 200, JSON, {**tokens, "error": "invalid_grant"}),
        (errors.InvalidRequest, "error in 400 beside tokens", 400, JSON, {**tokens, "error": "invalid_request"}),
        (errors.InvalidGrant, "description echoes tokens", 200, JSON,
         {**tokens, "error": "invalid_grant", "error_description": echoed}),
        (errors.OAuthError, "error code is a token", 400, JSON, {**tokens, "error": at}),
        (errors.InvalidGrant, "uri echoes tokens", 400, JSON,
         {**tokens, "error": "invalid_grant", "error_uri": f"https://p.example/e?t={at}&r={rt}"}),
        (errors.InvalidGrant, "description echoes a piece", 400, JSON,
         {**tokens, "error": "invalid_grant", "error_description": f"bad {at[5:25]} {rt[3:20]}"}),
        (errors.InvalidGrant, "description echoes with junk inside", 400, JSON,
         {**tokens, "error": "invalid_grant",
          "error_description": "\x00".join(at) + " " + "\u200b".join(rt)}),
        (errors.InvalidGrant, "form error echoes tokens", 200, FORM,
         _form({**tokens, "error": "invalid_grant", "error_description": echoed})),
        (errors.OAuthError, "form error code is a token", 400, FORM, _form({**tokens, "error": rt})),
        # token_type, expires_in and scope are tolerated on their own (defaults), so
        # each comes with something that is an error.
        (BAD_RESPONSE, "no token_type, no usable access_token", 200, JSON,
         {"access_token": at + "\n", "refresh_token": rt, "id_token": idt}),
        (BAD_RESPONSE, "wrong token_type, malformed refresh_token", 200, JSON,
         {"access_token": at, "token_type": at, "refresh_token": rt + "\x7f", "id_token": idt}),
        (BAD_RESPONSE, "invalid expires_in, non-OAuth 400", 400, JSON,
         {**tokens, "expires_in": f"in {at}", "token_type": "mac"}),
        (BAD_RESPONSE, "scope of the wrong type, non-OAuth 401", 401, JSON,
         {**tokens, "scope": {"granted": [at, rt]}}),
        (BAD_RESPONSE, "access_token not a string", 200, JSON,
         {"access_token": [at], "refresh_token": rt, "id_token": idt}),
        (BAD_RESPONSE, "access_token empty, tokens elsewhere", 200, JSON,
         {"access_token": "", "refresh_token": rt, "id_token": idt, "token": at}),
        (BAD_RESPONSE, "form: malformed refresh_token", 200, FORM,
         _form({"access_token": at, "refresh_token": rt + "\x01", "id_token": idt})),
        (BAD_RESPONSE, "form: no access_token", 200, FORM, _form({"refresh_token": rt, "id_token": idt})),
        (BAD_RESPONSE, "form: invalid expires_in, 403", 403, FORM, _form({**tokens, "expires_in": at})),
        # Bodies that are no use at all, whatever they carry.
        (errors.ResponseTooLarge, "over the size cap", 200, JSON,
         json.dumps({**tokens, "padding": "x" * 2048}).encode()),
        (errors.ProviderUnavailable, "5xx HTML echoing the tokens", 502, HTML,
         f"<html><body>upstream sent {every}</body></html>".encode()),
        (errors.ProviderUnavailable, "5xx JSON with tokens", 503, JSON, tokens),
        (errors.ProviderUnavailable, "429 with tokens", 429, JSON, {**tokens, "error_hint": every}),
        (BAD_RESPONSE, "JSON list of tokens", 200, JSON, json.dumps([at, rt, idt]).encode()),
        (BAD_RESPONSE, "JSON cut short", 200, JSON, json.dumps(tokens).encode()[:-1]),
        (BAD_RESPONSE, "JSON nested too deep", 200, JSON,
         json.dumps({**tokens, "deep": json.loads("[" * 40 + json.dumps(at) + "]" * 40)}).encode()),
        (BAD_RESPONSE, "not UTF-8", 200, JSON, json.dumps(tokens).encode() + b"\xff"),
        (BAD_RESPONSE, "text that is neither", 200, (("Content-Type", "text/plain"),), f"token: {at}".encode()),
        (BAD_RESPONSE, "HTML 200 with tokens", 200, HTML, f"<p>{every}</p>".encode()),
        (BAD_RESPONSE, "non-OAuth 4xx text", 404, (("Content-Type", "text/plain"),), every.encode()),
    ]
    return cases


def _shown(error):
    """Every text an error offers a log or a caller: str, repr, args, attributes."""
    texts = [str(error), repr(error), repr(error.args)]
    texts.extend(repr(value) for value in vars(error).values())
    return "\n".join(texts)


@pytest.mark.parametrize("name", [case[1] for case in _error_responses(_token_values())])
def test_error_messages_never_contain_token_values(name):
    tokens = _token_values()
    (expected, _, status, headers, body), = (
        case for case in _error_responses(tokens) if case[1] == name
    )
    with pytest.raises(errors.RoomSecretsError) as info:
        parse(body, status=status, headers=headers, max_body=1024)
    assert type(info.value) is expected, (name, info.value)
    shown = _shown(info.value)
    for kind, value in tokens.items():
        # A piece as long as the one scrub() looks for is a leak too.
        pieces = {value[start:start + 12] for start in range(len(value) - 11)}
        leaked = sorted(piece for piece in pieces if piece in shown)
        assert not leaked, (name, kind, shown)


def test_error_description_is_sanitised_and_bounded():
    with pytest.raises(errors.InvalidGrant) as info:
        parse({"error": "invalid_grant", "error_description": "bad\r\nX-Injected: 1" + "x" * 500})
    assert "\r" not in str(info.value) and "\n" not in str(info.value)
    assert len(info.value.description) <= 200


@pytest.mark.parametrize(("value", "seconds"), [(None, None), ("abc", None), ("0", 0.0), ("120", 120.0)])
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("raw", [10**400, -(10**400), 10**12, "1e400"])
def test_absurd_expires_in_falls_back_to_default_without_crashing(raw):
    body = json.dumps({"access_token": "AT", "expires_in": raw}).encode()
    assert parse(body, default_lifetime=50).expires_at == NOW + 50


try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # tests/core also runs with only pytest
    given = None

if given is not None:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    )
    token_fields = st.fixed_dictionaries(
        {}, optional={name: json_values for name in
                      ("access_token", "token_type", "expires_in", "refresh_token", "scope",
                       "id_token", "error", "error_description")})

    @given(fields=token_fields, status=st.sampled_from([200, 201, 400, 401, 429, 500, 502, 503]),
           form=st.booleans())
    def test_any_provider_answer_gives_a_token_set_or_a_typed_error(fields, status, form):
        from urllib.parse import urlencode
        if form:
            body = urlencode({k: str(v) for k, v in fields.items()}).encode()
            headers = FORM
        else:
            body = json.dumps(fields).encode()
            headers = JSON
        try:
            tokens = parse(body, status=status, headers=headers)
        except errors.RoomSecretsError:
            return
        assert tokens.access_token
        assert tokens.expires_at is None or tokens.expires_at >= NOW

    @given(body=st.binary(max_size=200), status=st.integers(100, 599))
    def test_any_bytes_give_a_token_set_or_a_typed_error(body, status):
        with contextlib.suppress(errors.RoomSecretsError):
            parse(body, status=status, headers=())


# --- headers as a mapping or as pairs ------------------------------------------------------


def _http_message(*pairs):
    """What urllib's response.headers is: an http.client.HTTPMessage (not a Mapping)."""
    import http.client

    message = http.client.HTTPMessage()
    for name, value in pairs:
        message[name] = value
    return message


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "7", "Content-Type": "text/html"},  # a dict: was ValueError (unpack)
        {"retry-after": "7", "content-type": "text/html"},  # names in any case
        (("RETRY-AFTER", "7"), ("Content-Type", "text/html")),  # pairs, as before
        [["Retry-After", "7"], ["Content-Type", "text/html"]],  # a list of two-item lists
        _http_message(("Retry-After", "7"), ("Content-Type", "text/html")),
    ],
    ids=["dict", "dict-lower-case", "tuple-pairs", "list-pairs", "HTTPMessage"],
)
def test_headers_are_read_from_a_mapping_or_from_pairs(headers):
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(b"<html>busy</html>", status=503, headers=headers)
    assert info.value.retry_after == 7.0
    assert "text/html" in str(info.value)  # the Content-Type was found too


def test_a_dict_of_headers_gives_the_same_token_set_as_pairs():
    body = _form({"access_token": "AT", "expires_in": "60", "scope": "a b"})
    from_pairs = parse(body, headers=FORM)
    from_dict = parse(body, headers=dict(FORM))
    assert from_dict == from_pairs
    assert from_dict.expires_at == NOW + 60


def test_a_multidict_gives_the_first_value_of_a_repeated_name():
    class MultiDict:  # aiohttp's CIMultiDictProxy and httpx.Headers behave so
        def items(self):
            return [("Retry-After", "3"), ("retry-after", "9")]

    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(b"", status=429, headers=MultiDict())
    assert info.value.retry_after == 3.0
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(b"", status=429, headers=_http_message(("Retry-After", "4"), ("Retry-After", "8")))
    assert info.value.retry_after == 4.0


SECRET_VALUE = "Bearer AT-do-not-echo-me"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({b"Retry-After": "7"}, "a header name must be a str, not bytes"),
        ({"Authorization": SECRET_VALUE.encode()}, "a header value must be a str, not bytes"),
        ([(b"Content-Type", b"application/json")], "a header name must be a str, not bytes"),
        ({7: "x"}, "a header name must be a str, not int"),
        ({"Retry-After": 7}, "a header value must be a str, not int"),
        ({"Retry-After": None}, "a header value must be a str, not NoneType"),
        (None, "headers must be a mapping or (name, value) pairs, not NoneType"),
        (7, "headers must be a mapping or (name, value) pairs, not int"),
        ("Content-Type", "a header pair must be a tuple or a list, not str"),
        (["ab"], "a header pair must be a tuple or a list, not str"),  # never ('a', 'b')
        ([("Authorization", SECRET_VALUE, "x")], "a header pair has 2 items, not 3"),
        ([("Retry-After",)], "a header pair has 2 items, not 1"),
    ],
)
def test_headers_that_are_not_str_pairs_are_invalid_input_naming_only_types(headers, message):
    with pytest.raises(errors.InvalidInput) as info:
        parse({"access_token": "AT"}, headers=headers)
    assert str(info.value) == message
    assert "do-not-echo" not in str(info.value)


def test_a_bad_header_is_refused_wherever_it_stands_and_whatever_the_body():
    # Checked before anything else, so the outcome does not depend on the order of
    # the headers, on which ones a branch looks up, or on the body.
    good = ("Content-Type", "application/json")
    for headers in ([good, ("X-Trace", b"1")], [("X-Trace", b"1"), good]):
        for body, status in (({"access_token": "AT"}, 200), ({"error": "invalid_grant"}, 400),
                             (b"x" * 2048, 200), (b"", 503)):
            with pytest.raises(errors.InvalidInput):
                parse(body, status=status, headers=headers, max_body=1024)


if given is not None:
    header_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                           max_size=12)

    @given(headers=st.dictionaries(header_names, st.text(max_size=12), max_size=6),
           name=header_names)
    def test_a_mapping_and_its_pairs_agree_on_every_lookup(headers, name):
        from roomsecrets.core.oauth.http import header_value

        pairs = tuple(headers.items())
        found = header_value(pairs, name)
        assert header_value(headers, name) == found
        assert header_value(headers, name.swapcase()) == header_value(pairs, name.upper())
        first = [v for k, v in pairs if k.lower() == name.lower()]
        assert found == (first[0] if first else None)
