"""``roomsecrets serve --port 0`` lets the system pick the port; the redirect URI and
the approval page it prints must name that port, not 0, or every callback is lost."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support import leak_watch

pytest.importorskip("aiohttp")

REPO = Path(__file__).resolve().parents[2]
KEY = secrets.token_hex(32)
leak_watch.remember_secret(KEY)


def test_serve_on_port_zero_names_the_port_it_got() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    environ["ROOMSECRETS_JWT_KEY"] = KEY
    server = subprocess.Popen(
        [sys.executable, "-m", "roomsecrets", "serve", "--port", "0", "--store", "memory"],
        env=environ, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stderr is not None
        first = server.stderr.readline()
        listening = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", first)
        redirect = re.search(r"redirect URI http://127\.0\.0\.1:(\d+)/oauth/callback", first)
        assert listening and redirect, first
        port = listening.group(1)
        assert port != "0" and redirect.group(1) == port
        assert f"approval page http://127.0.0.1:{port}/approve" in first
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        # The callback named in the redirect URI is really served there.
        with opener.open(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as answer:
            assert "/oauth/callback" in answer.read().decode()
    finally:
        server.terminate()
        _, rest = server.communicate(timeout=10)
    # One access line per request, in the server's log format.
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO roomsecrets.server.access "
        r"GET /openapi.json 200 room=None participant=None error=- \d+\.\dms$",
        rest, re.MULTILINE,
    ), rest
