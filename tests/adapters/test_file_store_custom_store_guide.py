"""The SQLite store in docs/custom-store.md passes the contract kit, so the guide stays true."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import types
from pathlib import Path

from hypothesis import settings

from roomsecrets.core.ports import SecretStore
from roomsecrets.testing import FakeClock, StoreContract

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "custom-store.md"


def _guide_module() -> types.ModuleType:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    (source,) = [block for block in blocks if "class SqliteStore" in block]
    module = types.ModuleType("custom_store_guide")
    exec(compile(source, str(GUIDE), "exec"), module.__dict__)
    return module


_guide = _guide_module()


def _scratch_parent() -> str | None:
    shm = "/dev/shm"  # tmpfs: no disk flushes, the logic is what is under test
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class TestGuideSqliteStore(StoreContract):
    async def make_store(self, clock: FakeClock) -> SecretStore:
        directory = tempfile.mkdtemp(prefix="rs-guide-", dir=_scratch_parent())
        store: SecretStore = _guide.SqliteStore(os.path.join(directory, "secrets.db"), clock=clock)
        return store

    async def close_store(self, store: SecretStore) -> None:
        shutil.rmtree(os.path.dirname(store._path), ignore_errors=True)  # type: ignore[attr-defined]

    def state_machine_settings(self) -> settings:
        # An example in a guide, not a shipped store: fewer examples keep the suite quick.
        return settings(max_examples=50, deadline=None)
