"""Two processes sharing one Secrets Manager (moto server) refresh an expired credential
with one POST, with and without the read cache."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any, Optional

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from roomsecrets.adapters.aws import SecretsManagerStore
from roomsecrets.core.credentials import StoredCredential
from tests.adapters.conftest import secretsmanager_client
from tests.core.service_kit import running_provider
from tests.support.refresh_race import assert_one_refresh, run_refresh_race


def aws_store(endpoint: str, prefix: str, cache_ttl: Optional[float]) -> SecretsManagerStore:
    return SecretsManagerStore(
        prefix=prefix, client=secretsmanager_client(endpoint), cache_ttl=cache_ttl
    )


async def warm_cache(store, service, endpoints) -> None:
    # Warm the read cache (if on) with the expired credential and its old refresh
    # token: the refresh must re-read it under the lease, not trust this copy.
    key = service.credential_key(owner="alice", requester="agent-1",
                                 client_id=endpoints["client_id"],
                                 token_endpoint=endpoints["token_endpoint"])
    warm = await store.get(key)
    assert warm is not None
    assert StoredCredential.from_json(warm.data).tokens.expires_at < time.time()


@pytest.mark.parametrize("cache_ttl", [None, 300.0], ids=["no-cache", "cache"])
def test_processes_sharing_secrets_manager_cause_one_refresh_post(
    moto_endpoint: str, cache_ttl: Any
) -> None:
    prefix = f"test/{uuid.uuid4().hex[:12]}"
    with running_provider() as provider:
        race = run_refresh_race(
            provider, functools.partial(aws_store, moto_endpoint, prefix, cache_ttl),
            processes=2, prepare=warm_cache)
        assert_one_refresh(provider, race)
