"""Processes sharing one FileSecretStore directory refresh an expired credential with one POST.

The twin of ``tests/core/test_refresh_across_processes.py``, with the real
file store in place of the shared in-memory one: its file leases and
compare-and-swap are what keep the refresh single-flight across processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
from pathlib import Path
from typing import Any

from roomsecrets.adapters.file import FileSecretStore
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.service import SecretsService
from tests.core.service_kit import REDIRECT_URI, approve_next, oauth_args, running_provider

PROCESSES = 4
CALLS_PER_PROCESS = 25


def worker(root: str, endpoints: dict[str, Any], start: Any, results: Any) -> None:
    """One process: its own service on the shared directory, many concurrent offline calls."""

    async def main() -> list[str]:
        service = SecretsService(store=FileSecretStore(root), room="myroom")
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        await asyncio.to_thread(start.wait, 60)  # all processes start together
        tokens = await asyncio.gather(*[
            agent.get_offline_oauth_token(**endpoints, delegated_by="alice")
            for _ in range(CALLS_PER_PROCESS)
        ], return_exceptions=True)
        return [t if isinstance(t, str) else repr(t) for t in tokens]

    results.put(asyncio.run(main()))


def test_processes_sharing_a_file_store_cause_one_refresh_post(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    with running_provider() as provider:
        store = FileSecretStore(root)

        async def first_approval() -> str:
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
        procs = [ctx.Process(target=worker, args=(root, endpoints, start, results))
                 for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        start.wait(60)
        got = [results.get(timeout=60) for _ in procs]
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
        # The refreshed credential is on disk, readable by a store opened afresh.
        (record,) = asyncio.run(FileSecretStore(root).list("myroom", "alice"))
        assert StoredCredential.from_json(record.data).tokens.access_token == token
