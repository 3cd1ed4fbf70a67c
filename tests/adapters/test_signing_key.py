"""The participant-token signing key in a file store's folder (``DIR/jwt.key``).

Whoever chooses that key can mint any participant token, so a key file is used
only when the file itself is a regular file of the effective user with mode
0600: a symlink, another user's file, a file others may read, a FIFO are each
refused with one line naming the check and the file. The CLI side of these
refusals is in ``test_cli.py``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomsecrets.adapters.server.signing_key import (
    KEY_FILE_NAME,
    StoreSpec,
    load_signing_key,
)
from roomsecrets.core.errors import InvalidInput

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")

#: A key someone planted: they know it, so it must never be used.
PLANTED = "ab" * 32


def spec(folder: Path) -> StoreSpec:
    return StoreSpec(kind="file", location=str(folder))


def write_key(path: Path, mode: int = 0o600) -> None:
    path.write_text(PLANTED + "\n")
    os.chmod(path, mode)


@pytest.fixture
def umask_277() -> Iterator[None]:
    """A umask that takes the owner's write bit too (0400 for a 0600 file)."""
    old = os.umask(0o277)
    try:
        yield
    finally:
        os.umask(old)


def test_a_private_key_file_of_ours_is_used(tmp_path: Path) -> None:
    write_key(tmp_path / KEY_FILE_NAME)
    assert load_signing_key(spec(tmp_path), environ={}) == PLANTED.encode()


def test_first_use_creates_one_key_with_mode_0600_even_under_a_strict_umask(
    tmp_path: Path, umask_277: None
) -> None:
    folder = tmp_path / "store"
    key = load_signing_key(spec(folder), environ={})
    info = os.stat(folder / KEY_FILE_NAME)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert len(key) >= 32
    assert load_signing_key(spec(folder), environ={}) == key  # read back, not made again
    assert sorted(os.listdir(folder)) == [KEY_FILE_NAME]  # no temporary left behind


def test_a_symlink_to_a_key_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.key"
    write_key(target)
    link = tmp_path / KEY_FILE_NAME
    link.symlink_to(target)
    with pytest.raises(InvalidInput) as caught:
        load_signing_key(spec(tmp_path), environ={})
    assert str(caught.value) == f"signing key file {link} is a symlink; refusing it"


def test_a_dangling_symlink_is_refused_and_its_target_is_never_created(tmp_path: Path) -> None:
    # A planted link to a place the attacker reads: creating the key through it
    # would hand them the new key.
    target = tmp_path / "attacker-reads-this"
    link = tmp_path / KEY_FILE_NAME
    link.symlink_to(target)
    with pytest.raises(InvalidInput, match="is a symlink; refusing it"):
        load_signing_key(spec(tmp_path), environ={})
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == [KEY_FILE_NAME]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o400, 0o700])
def test_a_key_file_whose_mode_is_not_0600_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / KEY_FILE_NAME
    write_key(path, mode)
    with pytest.raises(InvalidInput) as caught:
        load_signing_key(spec(tmp_path), environ={})
    assert str(caught.value) == (
        f"signing key file {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})"
    )


@pytest.mark.skipif(os.name == "posix" and os.geteuid() != 0, reason="chown needs root")
def test_a_key_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    write_key(path)
    os.chown(path, 12345, -1)
    with pytest.raises(InvalidInput) as caught:
        load_signing_key(spec(tmp_path), environ={})
    assert str(caught.value) == (
        f"signing key file {path} is owned by uid 12345, not you (uid {os.geteuid()}); "
        "refusing it"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    os.mkfifo(path, 0o600)
    with pytest.raises(InvalidInput) as caught:
        load_signing_key(spec(tmp_path), environ={})
    assert str(caught.value) == f"signing key file {path} is not a regular file; refusing it"


def test_the_environment_key_wins_over_a_refused_file(tmp_path: Path) -> None:
    write_key(tmp_path / KEY_FILE_NAME, 0o644)
    key = "k" * 32
    assert load_signing_key(spec(tmp_path), environ={"ROOMSECRETS_JWT_KEY": key}) == key.encode()
