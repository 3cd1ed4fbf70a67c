"""Processes sharing one FileSecretStore directory refresh an expired credential with one POST.

The file store's leases and compare-and-swap are what keep the refresh
single-flight across processes; the store is opened afresh in every process.
"""

from __future__ import annotations

import functools
from pathlib import Path

from roomsecrets.adapters.file import FileSecretStore
from tests.core.service_kit import running_provider
from tests.support.refresh_race import assert_one_refresh, run_refresh_race


def test_processes_sharing_a_file_store_cause_one_refresh_post(tmp_path: Path) -> None:
    with running_provider() as provider:
        race = run_refresh_race(
            provider, functools.partial(FileSecretStore, str(tmp_path / "store")), processes=4)
        assert_one_refresh(provider, race)
