"""Play the person at a real provider's pages, without a browser: oidc-provider's
development login and consent pages (``features.devInteractions``).

:func:`approve_at_provider` opens the prompt's authorization URL in a cookie-keeping
aiohttp session, signs in, consents (or cancels), and follows every redirect the way a
browser tab would, up to our server's ``/oauth/callback``. Unlike
``tests/support/headless_person.py`` (made for our own dev provider, which redirects at
once), it reads the provider's HTML forms with the stdlib :mod:`html.parser` and submits
them, so it works whatever paths and hidden fields the provider uses, and it follows
redirects itself, so a test can tamper with the one to our callback.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from typing import Callable, Optional
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

__all__ = [
    "CallbackVisit",
    "PersonError",
    "answer_from_provider",
    "approve_at_provider",
    "page_forms",
]

#: The most pages a sign-in and consent may take (login, consent, and their redirects
#: are followed by aiohttp itself); more means the provider loops.
MAX_PAGES = 6


class PersonError(AssertionError):
    """The provider showed a page the person cannot get past (an error page, a loop)."""


@dataclasses.dataclass(frozen=True)
class Form:
    """One ``<form>`` of a page: where it posts and its fields (name -> value)."""

    action: str
    method: str
    fields: dict[str, str]


@dataclasses.dataclass(frozen=True)
class CallbackVisit:
    """What the person saw at the end: our ``/oauth/callback`` page.

    ``query`` is the callback's query string (``code``, ``state``, ``iss`` or
    ``error``), as the provider's redirect set it; ``pages`` names the provider
    pages the person went through (``login``, ``consent``).
    """

    status: int
    headers: dict[str, str]
    text: str
    query: dict[str, str]
    pages: tuple[str, ...]


class _PageReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._form: Optional[Form] = None
        self._link: Optional[list[str]] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = Form(
                action=found.get("action", ""),
                method=found.get("method", "get").lower(),
                fields={},
            )
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and found.get("name"):
            self._form.fields[found["name"]] = found.get("value", "")
        elif tag == "a" and "href" in found:
            self._link = [found["href"], ""]

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], self._link[1].strip()))
            self._link = None


def page_forms(html: str) -> tuple[list[Form], list[tuple[str, str]]]:
    """The forms and links (href, text) of an HTML page."""
    reader = _PageReader()
    reader.feed(html)
    reader.close()
    return reader.forms, reader.links


def _single_values(query: str) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True).items()}


#: Redirects one page may take (oidc-provider: /auth -> /interaction -> /auth/{uid} ...).
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def approve_at_provider(
    authorization_url: str,
    *,
    callback_url: str,
    login: str = "alice",
    cancel_at: Optional[str] = None,
    session: Optional[aiohttp.ClientSession] = None,
    rewrite_callback: Optional[Callable[[str], str]] = None,
) -> CallbackVisit:
    """Sign in as ``login`` and consent at the provider, then land on ``callback_url``.

    ``cancel_at="login"`` or ``"consent"``: follow the page's Cancel link there instead
    (oidc-provider then redirects with ``error=access_denied``). ``session``: a
    browser that already has the provider's cookies (a person who signed in before);
    by default a fresh one. ``rewrite_callback``: change the provider's redirect to
    our callback before following it (an attacker in the middle, for the RFC 9207
    tests). Raises :class:`PersonError` on a provider error page.
    """
    walked = await _walk(
        authorization_url, callback_url=callback_url, login=login, cancel_at=cancel_at,
        session=session, rewrite_callback=rewrite_callback, stop_at_callback=False,
    )
    assert walked.response is not None
    return CallbackVisit(
        status=walked.response.status,
        headers=dict(walked.response.headers),
        text=walked.text,
        query=walked.query,
        pages=walked.pages,
    )


async def answer_from_provider(
    authorization_url: str, *, callback_url: str, login: str = "alice"
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Sign in and consent, but stop at the provider's redirect to ``callback_url``:
    its query (``code``, ``state``, ``iss``) and the pages seen, for a person who
    answers through ``provide_oauth_authorization`` instead of our callback."""
    walked = await _walk(
        authorization_url, callback_url=callback_url, login=login, cancel_at=None,
        session=None, rewrite_callback=None, stop_at_callback=True,
    )
    return walked.query, walked.pages


@dataclasses.dataclass(frozen=True)
class _Walked:
    response: Optional[aiohttp.ClientResponse]  # None: stopped before the callback
    text: str
    query: dict[str, str]
    pages: tuple[str, ...]


async def _walk(
    authorization_url: str,
    *,
    callback_url: str,
    login: str,
    cancel_at: Optional[str],
    session: Optional[aiohttp.ClientSession],
    rewrite_callback: Optional[Callable[[str], str]],
    stop_at_callback: bool,
) -> _Walked:
    own = session is None
    browser = session or aiohttp.ClientSession(
        # unsafe: keep cookies of IP-address hosts (127.0.0.1), as browsers do.
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    pages: list[str] = []

    async def visit(
        method: str, url: str, data: Optional[dict[str, str]] = None
    ) -> tuple[Optional[aiohttp.ClientResponse], str, str]:
        """Like a browser tab: follow redirects (POST becomes GET after 301-303)."""
        for _ in range(MAX_REDIRECTS):
            response = await browser.request(method, url, data=data, allow_redirects=False)
            text = await response.text()
            if response.status not in _REDIRECTS:
                return response, url, text
            url = urljoin(url, response.headers["Location"])
            if url.split("?", 1)[0] == callback_url:
                if stop_at_callback:
                    return None, url, ""
                if rewrite_callback is not None:
                    url = rewrite_callback(url)
            if response.status in (301, 302, 303):
                method, data = "GET", None
        raise PersonError(f"more than {MAX_REDIRECTS} redirects")

    try:
        response, here, text = await visit("GET", authorization_url)
        for _ in range(MAX_PAGES):
            if here.split("?", 1)[0] == callback_url:
                query = _single_values(urlsplit(here).query)
                return _Walked(response, text, query, tuple(pages))
            assert response is not None
            forms, links = page_forms(text)
            posting = [form for form in forms if "prompt" in form.fields]
            if response.status != 200 or len(posting) != 1:
                raise PersonError(
                    f"unexpected provider page {response.status} {urlsplit(here).path}: "
                    f"{text[:300]!r}"
                )
            [form] = posting
            page = form.fields["prompt"]
            pages.append(page)
            if cancel_at == page:
                [cancel] = [href for href, label in links if "Cancel" in label]
                response, here, text = await visit("GET", urljoin(here, cancel))
                continue
            fields = dict(form.fields)
            if page == "login":
                fields.update(login=login, password="any password")
            elif page != "consent":
                raise PersonError(f"unknown provider prompt {page!r}")
            if form.method != "post":
                raise PersonError(f"the {page} form does not POST")
            response, here, text = await visit("POST", urljoin(here, form.action), fields)
        raise PersonError(f"no callback after {MAX_PAGES} pages: {pages}")
    finally:
        if own:
            await browser.close()
