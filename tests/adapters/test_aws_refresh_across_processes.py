"""Two processes sharing one Secrets Manager (moto server) refresh an expired credential
with one POST, with and without the read cache."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
import uuid
from typing import Any, Optional

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from roomsecrets.adapters.aws import SecretsManagerStore
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.service import SecretsService
from tests.adapters.conftest import secretsmanager_client
from tests.core.service_kit import REDIRECT_URI, approve_next, oauth_args, running_provider

PROCESSES = 2
CALLS_PER_PROCESS = 25


def aws_store(endpoint: str, prefix: str, cache_ttl: Optional[float]) -> SecretsManagerStore:
    return SecretsManagerStore(
        prefix=prefix, client=secretsmanager_client(endpoint), cache_ttl=cache_ttl
    )


def worker(endpoint, prefix, cache_ttl, endpoints, start, results):
    """One process: its own service and boto3 client, many concurrent offline calls."""

    async def main():
        store = aws_store(endpoint, prefix, cache_ttl)
        service = SecretsService(store=store, room="myroom")
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        # Warm the read cache (if on) with the expired credential and its old refresh
        # token: the refresh must re-read it under the lease, not trust this copy.
        key = service.credential_key(owner="alice", requester="agent-1",
                                     client_id=endpoints["client_id"],
                                     token_endpoint=endpoints["token_endpoint"])
        warm = await store.get(key)
        assert warm is not None
        assert StoredCredential.from_json(warm.data).tokens.expires_at < time.time()
        await asyncio.to_thread(start.wait, 60)  # all processes start together
        tokens = await asyncio.gather(*[
            agent.get_offline_oauth_token(**endpoints, delegated_by="alice")
            for _ in range(CALLS_PER_PROCESS)
        ], return_exceptions=True)
        return [t if isinstance(t, str) else repr(t) for t in tokens]

    results.put(asyncio.run(main()))


@pytest.mark.parametrize("cache_ttl", [None, 300.0], ids=["no-cache", "cache"])
def test_processes_sharing_secrets_manager_cause_one_refresh_post(
    moto_endpoint: str, cache_ttl: Any
) -> None:
    prefix = f"test/{uuid.uuid4().hex[:12]}"
    with running_provider() as provider:
        store = aws_store(moto_endpoint, prefix, cache_ttl)

        async def first_approval():
            service = SecretsService(store=store, room="myroom")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            request = asyncio.create_task(agent.request_oauth_token(
                **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI))
            await approve_next(alice)
            token = await request
            # Age the stored credential: expired an hour ago, as if time passed.
            (record,) = await store.list("myroom", "alice")
            cred = StoredCredential.from_json(record.data)
            past = time.time() - 7200
            aged = cred.with_tokens(dataclasses.replace(
                cred.tokens, issued_at=past, expires_at=past + 3600))
            await store.put(record.key, type=OAUTH_TOKEN_TYPE, name=record.name,
                            data=aged.to_json(), expected_version=record.version)
            return token

        old_token = asyncio.run(first_approval())
        assert provider.refresh_posts == 0

        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(PROCESSES + 1)
        results = ctx.Queue()
        endpoints = oauth_args(provider)
        procs = [
            ctx.Process(
                target=worker,
                args=(moto_endpoint, prefix, cache_ttl, endpoints, start, results),
            )
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        start.wait(60)
        got = [results.get(timeout=90) for _ in procs]
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0

        tokens = {token for batch in got for token in batch}
        assert len(tokens) == 1, tokens
        (token,) = tokens
        assert token != old_token
        assert provider.is_active(token)
        assert provider.refresh_posts == 1
        assert provider.revoked_grants == 0
        # The rotated credential was saved to Secrets Manager.
        (record,) = asyncio.run(store.list("myroom", "alice"))
        assert StoredCredential.from_json(record.data).tokens.access_token == token
