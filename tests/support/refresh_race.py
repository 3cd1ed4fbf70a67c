"""Several processes sharing one store race to refresh one expired credential.

The one harness behind the multi-process refresh tests (the shared in-memory store,
the file store, the AWS store): approve once, age the stored credential, then start
``processes`` spawned processes that each make ``calls`` concurrent offline fetches on
their own service over the same store. The caller asserts what must hold: one token
for everyone, one refresh POST, the grant alive, the rotation saved.

``store_factory`` must pickle (a module-level function, or a ``functools.partial`` of
one): each spawned process builds its own store from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
from typing import Any, Callable

from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.ports import SecretStore
from roomsecrets.core.service import SecretsService
from tests.core.service_kit import REDIRECT_URI, approve_next, oauth_args

StoreFactory = Callable[[], SecretStore]
#: Runs in each process before the start line, e.g. to warm a read cache.
Prepare = Callable[[SecretStore, SecretsService, dict], Any]


@dataclasses.dataclass
class RaceResult:
    old_token: str
    #: Every result the processes' calls returned: tokens, or the repr of an error.
    results: set[str]
    #: The access token of the credential in the store after the race.
    stored_token: str


def _worker(store_factory, prepare, calls, endpoints, start, results):
    async def main():
        store = store_factory()
        service = SecretsService(store=store, room="myroom")
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        if prepare is not None:
            await prepare(store, service, endpoints)
        await asyncio.to_thread(start.wait, 60)  # all processes start together
        tokens = await asyncio.gather(*[
            agent.get_offline_oauth_token(**endpoints, delegated_by="alice")
            for _ in range(calls)
        ], return_exceptions=True)
        return [t if isinstance(t, str) else repr(t) for t in tokens]

    results.put(asyncio.run(main()))


async def _approve_and_age(store: SecretStore, provider) -> str:
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


def run_refresh_race(
    provider, store_factory: StoreFactory, *, processes: int, calls: int = 25,
    prepare: Prepare | None = None, timeout: float = 90,
) -> RaceResult:
    """Approve, age, race; see the module docstring."""
    old_token = asyncio.run(_approve_and_age(store_factory(), provider))
    assert provider.refresh_posts == 0
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    endpoints = oauth_args(provider)
    procs = [ctx.Process(target=_worker,
                         args=(store_factory, prepare, calls, endpoints, start, results))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    start.wait(60)
    got = [results.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    (record,) = asyncio.run(store_factory().list("myroom", "alice"))
    stored = StoredCredential.from_json(record.data).tokens.access_token
    return RaceResult(old_token=old_token, results={t for batch in got for t in batch},
                      stored_token=stored)


def assert_one_refresh(provider, race: RaceResult) -> None:
    """Everyone got the same new token, from one POST, the grant alive and the rotation saved."""
    assert len(race.results) == 1, race.results
    (token,) = race.results
    assert token != race.old_token
    assert provider.is_active(token)
    assert provider.refresh_posts == 1
    assert provider.revoked_grants == 0
    assert race.stored_token == token
