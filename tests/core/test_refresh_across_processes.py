"""Several processes sharing one store refresh an expired credential with one POST."""

from __future__ import annotations

import functools

from tests.core.service_kit import running_provider
from tests.support.refresh_race import assert_one_refresh, run_refresh_race
from tests.support.shared_store import SharedStoreClient, serve


def test_processes_sharing_a_store_cause_one_refresh_post():
    manager = serve()
    try:
        with running_provider() as provider:
            race = run_refresh_race(
                provider, functools.partial(SharedStoreClient, manager.address), processes=4)
            assert_one_refresh(provider, race)
    finally:
        manager.shutdown()
