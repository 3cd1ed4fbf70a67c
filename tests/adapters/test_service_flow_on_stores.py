"""The seed flow tests of the service layer, run again on the file and AWS stores.

Every test of ``tests/core/test_service_flow.py`` is collected here too (the star
import), once per store; the autouse fixture makes each service the test builds
without a store use a fresh file store or AWS store (on the session's moto server).
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from roomsecrets.adapters.file import FileSecretStore
from tests.core import service_kit
from tests.core.test_service_flow import *  # noqa: F403 - re-run every flow test here

_stores = itertools.count()


@pytest.fixture(autouse=True, params=["file", "aws"])
def store_under_test(request, monkeypatch, tmp_path):
    if request.param == "file":
        def make():
            return FileSecretStore(tmp_path / f"store-{next(_stores)}")
    else:
        from roomsecrets.adapters.aws import SecretsManagerStore

        client = request.getfixturevalue("moto_client")

        def make():
            return SecretsManagerStore(prefix=f"flow-{uuid.uuid4().hex[:12]}", client=client)
    monkeypatch.setattr(service_kit, "default_store", make)
    return request.param
