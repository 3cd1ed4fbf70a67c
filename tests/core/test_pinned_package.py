"""Pinned: the package's public names are imported on first use and then kept (PEP 562)."""

from __future__ import annotations

import pytest

import roomsecrets.core as core
from roomsecrets.core import grants, service


@pytest.mark.parametrize(
    "name, module",
    [("SecretsGrant", grants), ("SecretsService", service)],
)
def test_a_lazy_name_is_imported_from_its_module_and_then_kept(
    monkeypatch: pytest.MonkeyPatch, name: str, module: object
) -> None:
    # Forget the name, as in a fresh interpreter; monkeypatch puts it back afterwards.
    monkeypatch.delitem(vars(core), name, raising=False)
    value = getattr(core, name)
    assert value is getattr(module, name)
    assert vars(core)[name] is value  # the next lookup is a plain attribute


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError) as caught:
        core.NoSuchThing  # noqa: B018 - the lookup is the test
    assert str(caught.value) == "module 'roomsecrets.core' has no attribute 'NoSuchThing'"


def test_dir_lists_the_lazy_names_before_their_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(vars(core), "UrllibTransport", raising=False)
    names = dir(core)
    assert names == sorted(names)
    assert "UrllibTransport" in names
    assert "InvalidInput" in names  # loaded eagerly
    assert set(core.__all__) <= set(names)
