"""``roomsecrets demo --open``: a newcomer approves by hand in their own browser,
played here by headless Chromium following the sign-in URL the demo prints."""

from __future__ import annotations

import io
import queue
import re
import threading
from typing import Any

import pytest

from roomsecrets.demo import AGENT, run_demo
from tests.support import leak_watch

expect: Any = pytest.importorskip("playwright.sync_api").expect


class _Lines(io.StringIO):
    """A text stream that hands each printed line to the test as it comes."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: queue.Queue[str] = queue.Queue()
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.put(line)
        return len(text)


def test_demo_open_prints_a_sign_in_url_and_a_person_approves_in_the_browser(
    context: Any, tmp_path: Any
) -> None:
    out = _Lines()
    status: list[int] = []
    demo = threading.Thread(
        target=lambda: status.append(
            run_demo(data=str(tmp_path), out=out, by_hand=True, by_hand_timeout=60)
        ),
        daemon=True,
    )
    demo.start()
    printed: list[str] = []
    url = None
    while url is None:
        line = out.lines.get(timeout=30)
        printed.append(line)
        found = re.fullmatch(r"\s+(http://127\.0\.0\.1:\d+/approve#token=\S+)", line)
        if found:
            url = found.group(1)
            leak_watch.remember_secret(url.split("#token=")[1])
    assert "open this in your browser" in printed[-2]

    page = context.new_page()
    page.goto(url)
    item = page.get_by_role("listitem").filter(has_text=AGENT)
    with context.expect_page() as opened:
        item.get_by_role("button", name="Approve", exact=True).click()
    expect(opened.value.get_by_role("heading", name="Approved")).to_be_visible()
    demo.join(60)
    assert status == [0]
    while not out.lines.empty():
        printed.append(out.lines.get())
    assert any("you approve on the page" in line for line in printed)
    assert printed[-1].startswith("all 6 steps did what they say")
    # The sign-in URL is the only line that holds the person's token.
    token = url.split("#token=")[1]
    assert [line for line in printed if token in line] == ["  " + url]
