"""The import a user makes leaves to first use what the service does not need to start.

``from roomsecrets import SecretsService, SecretsGrant, MemoryStore`` loads asyncio
(the service is async) but not JSON, the HTTP-date parser or the urllib transport;
``import roomsecrets`` loads only the errors. ``benchmarks/bench_import.py`` times the
first against Authlib's ``AsyncOAuth2Client``; these tests pin which modules it loads,
each in a fresh interpreter that imports this checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import roomsecrets

REPO = Path(roomsecrets.__file__).resolve().parents[1]
USERS_IMPORT = "from roomsecrets import SecretsService, SecretsGrant, MemoryStore"
#: Loaded on first use: a token response or stored credential (json), a Retry-After
#: HTTP-date (email.utils, which brings datetime), the default transport (urllib).
FIRST_USE = (
    "json",
    "email.utils",
    "datetime",
    "http.client",
    "urllib.request",
    "roomsecrets.core.oauth.urllib_transport",
)


def loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(*[n for n in {names!r} if n in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_users_import_leaves_json_dates_and_the_transport_for_first_use() -> None:
    assert loaded_after(USERS_IMPORT, FIRST_USE) == []


def test_the_probe_sees_what_the_users_import_loads() -> None:
    # A probe that printed nothing would pass the test above.
    assert loaded_after(USERS_IMPORT, ("roomsecrets.core.service", "asyncio")) == [
        "roomsecrets.core.service",
        "asyncio",
    ]


def test_import_roomsecrets_loads_neither_asyncio_nor_dataclasses() -> None:
    assert loaded_after("import roomsecrets", ("asyncio", "dataclasses", *FIRST_USE)) == []
