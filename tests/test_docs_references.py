"""docs/security.md names, for each rule, the test that proves it. A renamed or
deleted test would leave the page claiming a proof that no longer exists, so every
``path::test`` it names must exist as a test function in that file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["docs/security.md"]
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    references = _REFERENCE.findall(text)
    assert references, f"{doc} names no test"
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file() or name not in _test_names(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc} names tests that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_folder_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    folders = set(re.findall(r"`(tests/[\w/]+/)`", text))
    missing = sorted(f for f in folders if not (ROOT / f).is_dir())
    assert not missing, f"{doc} names folders that do not exist: {missing}"
