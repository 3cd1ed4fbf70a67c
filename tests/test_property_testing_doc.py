"""docs/property-testing.md stays true: its examples run and do what the page says."""

from __future__ import annotations

import re
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis.stateful import run_state_machine_as_test

from roomsecrets.testing import pending_state_machine
from tests.test_pending_kit import MUST_FAIL, QUICK

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "property-testing.md"
TEXT = PAGE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


def _block(marker: str) -> str:
    (source,) = [block for block in BLOCKS if marker in block]
    return source


def _run(source: str, name: str) -> Any:
    module = types.ModuleType(name)
    exec(compile(source, str(PAGE), "exec"), module.__dict__)
    return module


def test_the_shipped_registry_example_passes() -> None:
    example = _run(_block("# test_pending_registry_kit.py"), "kit_shipped_example")
    assert example.TestShippedRegistry.settings.max_examples == 200
    run_state_machine_as_test(example.ShippedRegistry, settings=QUICK)


def test_the_broken_registry_example_fails_as_the_page_shows() -> None:
    example = _run(_block("# test_broken_registry.py"), "kit_broken_example")
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(example.BrokenRegistry, settings=MUST_FAIL)
    rule = r"for request '[\w-]+' in REJECTED: expected UnknownRequest, but the call returned"
    assert re.search(rule, str(caught.value)), str(caught.value)
    # The output pasted on the page is this failure: a reject, then an answer.
    assert re.search(r"E       AssertionError: provide by .*" + rule, TEXT)
    answer = r"state\.(provide|the_target_answers_again)\("
    assert re.search(r"state\.reject\(.*\n.*\nE       " + answer, TEXT)


def test_the_model_alone_example_passes() -> None:
    example = _run(_block("class ApprovalButtons"), "kit_model_example")
    example.test_the_buttons_are_enabled_exactly_while_an_answer_is_legal()


def test_the_vendored_example_passes_and_the_page_shows_the_missing_core_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "__init__.py").write_text("", encoding="utf-8")
    shutil.copytree(
        REPO / "roomsecrets" / "core",
        tmp_path / "acme" / "_rscore",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        example = _run(_block("# test_vendored_registry.py"), "kit_vendored_example")
        run_state_machine_as_test(example.VendoredRegistry, settings=QUICK)
        copy = sys.modules["acme._rscore"]
        without_core = pending_state_machine(lambda clock: copy.PendingRegistry(clock=clock))
        with pytest.raises(AssertionError) as caught:
            run_state_machine_as_test(without_core, settings=MUST_FAIL)
        hint = "(the same name from another module, acme._rscore."
        assert hint in str(caught.value)
        assert hint in TEXT and "pass that copy as core=)" in TEXT
    finally:
        for name in [m for m in sys.modules if m == "acme" or m.startswith("acme.")]:
            del sys.modules[name]


def test_the_tests_the_page_names_exist() -> None:
    named = set(re.findall(r"`(tests/[\w/]+\.py)`", TEXT))
    assert named
    assert sorted(path for path in named if not (REPO / path).is_file()) == []
