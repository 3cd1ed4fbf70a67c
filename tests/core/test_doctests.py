"""The examples in the core's docstrings are tests too."""

import doctest
import importlib
import pkgutil

import pytest

import roomsecrets.core

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(roomsecrets.core.__path__, "roomsecrets.core.")
    if not name.endswith(".__main__")  # a script: importing it prints
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
