"""FileSecretStore survives SIGKILL at any moment: nothing acknowledged is lost, nothing is torn.

A child process writes in a loop (compare-and-swap puts, unconditional puts,
compare-and-swap deletes, new keys) and reports on its stdout, a pipe to us,
each operation before it starts (``begin``) and after it returned (``done``).
We kill it with SIGKILL at a random moment, read what it reported, and check
the store on disk with a fresh ``FileSecretStore``:

* every key is exactly as its last acknowledged write left it, except the one
  key the killed operation was working on, which is either as before or as
  that operation would have left it (it may have completed unacknowledged);
* every secret file parses (no corrupt files, nothing moved aside), every
  listed key is one we know of;
* no key is ever given a version it had before, across deletes and kills.

Then the next child carries on with the same directory. 100 kills with the
``CI`` environment variable set, 20 otherwise (``ROOMSECRETS_CRASH_KILLS``
overrides both). The counts are printed at the end of the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from roomsecrets.adapters.file import FileSecretStore
from roomsecrets.core.errors import VersionConflict
from roomsecrets.core.ports import SecretKey, SecretRecord

ROOM = "crash-room"
OWNERS = ("alice", "Bob")
FIXED_KEYS = (
    ("alice", "mail", None),
    ("alice", "mail", "agent-1"),
    ("alice", "drive", None),
    ("Bob", "mail", None),
    ("Bob", "Files/docs", "agent-2"),
)
REPO = Path(__file__).resolve().parents[2]


def _key_text(key: SecretKey) -> str:
    return f"{key.owner}|{key.secret_id}|{key.delegated_to or ''}"


def _key_from_text(text: str) -> SecretKey:
    owner, secret_id, delegated_to = text.split("|")
    return SecretKey(room=ROOM, owner=owner, secret_id=secret_id, delegated_to=delegated_to or None)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# --- the child ------------------------------------------------------------------------


def child_main(root: str, seed: int) -> None:
    """Write forever, reporting each operation on stdout: ``begin ...`` then ``done ...``."""
    rng = random.Random(seed)
    store = FileSecretStore(root)
    keys = [SecretKey(room=ROOM, owner=o, secret_id=s, delegated_to=d) for o, s, d in FIXED_KEYS]

    def say(*words: object) -> None:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()

    async def main() -> None:
        created = 0
        say("ready")
        while True:
            choice = rng.random()
            if choice < 0.1:
                created += 1
                key = SecretKey(room=ROOM, owner=rng.choice(OWNERS),
                                secret_id=f"new-{seed}-{created}")
                keys.append(key)
                op = "create"
            else:
                key = rng.choice(keys)
                op = "put-cas" if choice < 0.55 else "put" if choice < 0.8 else "delete-cas"
            current = await store.get(key)
            version = 0 if current is None else current.version
            if op == "delete-cas":
                say("begin", op, _key_text(key), version, "-")
                deleted = await store.delete(key, expected_version=version)
                say("done", op, _key_text(key), version if deleted else 0, "-")
                continue
            data = os.urandom(rng.choice((0, 16, 200, 4096, 20_000)))
            say("begin", op, _key_text(key), version, _digest(data))
            expected = None if op == "put" else (0 if op == "create" else version)
            try:
                record = await store.put(key, type="application/octet-stream", name=None,
                                         data=data, expected_version=expected)
            except VersionConflict:  # only one writer: this never happens
                say("conflict", op, _key_text(key), version, "-")
                raise
            say("done", op, _key_text(key), record.version, _digest(data))

    asyncio.run(main())


# --- the parent -----------------------------------------------------------------------


@dataclass
class Model:
    """What the child acknowledged: key -> (version, digest), None once deleted."""

    state: dict[SecretKey, Optional[tuple[int, str]]] = field(default_factory=dict)
    #: Every version each key was ever seen with, acknowledged or found on disk.
    versions: dict[SecretKey, set[int]] = field(default_factory=dict)
    acknowledged: int = 0

    def give_version(self, key: SecretKey, version: int) -> None:
        seen = self.versions.setdefault(key, set())
        assert all(version > earlier for earlier in seen), (
            f"{key!r} got version {version} after {sorted(seen)}: reused or went back"
        )
        seen.add(version)


@dataclass
class InFlight:
    op: str
    key: SecretKey
    digest: str


def _apply_reports(model: Model, output: bytes) -> Optional[InFlight]:
    """Fold the child's complete report lines into ``model``; return the unfinished op."""
    pending: Optional[InFlight] = None
    lines = output.split(b"\n")
    for raw in lines[:-1]:  # the last piece is empty or a line cut short by the kill
        words = raw.decode().split(" ")
        if words[0] == "ready":
            continue
        kind, op, key_text, version_text, digest = words
        key, version = _key_from_text(key_text), int(version_text)
        if kind == "begin":
            pending = InFlight(op, key, digest)
            continue
        assert kind == "done", raw
        pending = None
        model.acknowledged += 1
        if op == "delete-cas":
            if version:
                model.state[key] = None
        else:
            model.give_version(key, version)
            model.state[key] = (version, digest)
    return pending


async def _check_disk(root: Path, model: Model, in_flight: Optional[InFlight]) -> bool:
    """Compare the store on disk with the model; return whether the killed op took effect."""
    store = FileSecretStore(root)
    listed: dict[SecretKey, SecretRecord] = {}
    for owner in OWNERS:
        for record in await store.list(ROOM, owner):  # parses every file of the owner
            listed[record.key] = record
    applied = False
    keys = set(model.state) | set(listed) | ({in_flight.key} if in_flight else set())
    for key in keys:
        got = await store.get(key)
        assert (got is None) == (key not in listed), f"get and list disagree on {key!r}"
        found = None if got is None else (got.version, _digest(got.data))
        want = model.state.get(key)
        if found == want:
            continue
        assert in_flight is not None and key == in_flight.key, (
            f"{key!r}: acknowledged {want}, found {found} (the killed op was {in_flight})"
        )
        if in_flight.op == "delete-cas":
            assert found is None, f"{key!r}: a half-done delete left {found}"
        else:
            assert found is not None and found[1] == in_flight.digest, (
                f"{key!r}: acknowledged {want}, found {found}, the killed put wrote "
                f"{in_flight.digest}"
            )
            model.give_version(key, found[0])
        model.state[key] = found
        applied = True
    return applied


def _start_child(root: Path, seed: int) -> subprocess.Popen[bytes]:
    code = (
        "import sys; from tests.adapters.test_file_store_crash import child_main; "
        "child_main(sys.argv[1], int(sys.argv[2]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(root), str(seed)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _kills() -> int:
    override = os.environ.get("ROOMSECRETS_CRASH_KILLS")
    if override:
        return int(override)
    return 100 if os.environ.get("CI") else 20


def test_sigkill_at_random_moments_loses_no_acknowledged_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(int(os.environ.get("ROOMSECRETS_CRASH_SEED", time.time_ns())))
    root = tmp_path / "store"  # the real disk, with real fsync
    model = Model()
    kills = mid_operation = applied = torn_writes = 0
    started = time.monotonic()
    for _ in range(_kills()):
        child = _start_child(root, rng.randrange(1 << 30))
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first == b"ready\n", f"the child did not start: {first!r}"
        time.sleep(rng.uniform(0.0, 0.2))
        child.send_signal(signal.SIGKILL)
        output, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, f"the child ended by itself: {child.returncode}"
        kills += 1
        in_flight = _apply_reports(model, output)
        # Killed between creating its temporary file and the rename (the next list removes it).
        torn_writes += len(list(root.rglob(".tmp-*")))
        mid_operation += in_flight is not None
        applied += asyncio.run(_check_disk(root, model, in_flight))
    corrupt = sorted(root.rglob("*.corrupt-*"))
    files = sorted((root / "secrets").glob("*/*/*.secret"))
    summary = (
        f"file store crash test: {kills} SIGKILLs, {model.acknowledged} acknowledged writes, "
        f"{mid_operation} kills during an operation ({applied} of those had taken effect), "
        f"{len(files)} secret files all parsed, {len(corrupt)} corrupt files found, "
        f"{torn_writes} kills mid-write (temporary file left, cleaned by the next list), "
        f"{time.monotonic() - started:.1f}s"
    )
    with capsys.disabled():
        print("\n" + summary)
    assert not corrupt, summary
    assert model.acknowledged >= kills, summary
    live = {key for key, state in model.state.items() if state is not None}
    assert len(files) == len(live), summary
