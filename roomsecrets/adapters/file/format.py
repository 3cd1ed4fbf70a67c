"""The bytes of one :class:`~roomsecrets.adapters.file.FileSecretStore` file, and its errors.

Every file is one header line and a JSON body::

    roomsecrets-file 1 secret 231 5d41402abc4b2a76b9719d911017c592...
    {"data":"dG9rZW4=","encryption":null,"key":{"delegated_to":null,"owner":...

The header says what the file is (format version, kind, body length) and
carries the SHA-256 of everything before it plus the body, so a truncated or
damaged file is always detected: we only ever replace files atomically, so a
file that fails this check was hurt by the disk or by hand, never by a crash
of ours. Such a file raises :class:`DamagedFile` inside the store, which moves
it aside and raises :class:`CorruptStoreFile`.

A secret's body holds its full key (so a reader can check it found the right
file), type, name, version and data (base64). With an encryption key, ``data``
is AES-GCM ciphertext (NIST SP 800-38D) with a fresh random 96-bit nonce per
write, and the format version, key, type, name and version are bound in as
associated data, so a file copied to another secret's path, or edited, fails
to decrypt. ``encryption.key_id`` names the key (a truncated SHA-256 of it,
which reveals nothing about the key itself).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
from typing import Any, Optional

from ...core.errors import ConfigurationError, StoreError
from ...core.ports import Lease, SecretKey, SecretRecord

__all__ = [
    "FORMAT",
    "Cipher",
    "CorruptStoreFile",
    "DamagedFile",
    "SecretDecryptionError",
    "VersionCounter",
    "decode_lease",
    "decode_secret",
    "decode_versions",
    "encode_lease",
    "encode_secret",
    "encode_versions",
]

#: The format this code writes. Files of a newer format are refused, never moved.
FORMAT = 1
_MAGIC = "roomsecrets-file"
_SECRET, _LEASE, _VERSIONS = "secret", "lease", "versions"
_ALGORITHM = "AES-GCM"
_NONCE_BYTES = 12  # the GCM nonce size NIST SP 800-38D §8.2 recommends


class CorruptStoreFile(StoreError):
    """A store file was damaged (truncated, bad checksum, not our format).

    The file has been moved aside (renamed ``*.corrupt-<time>-<random>`` in
    the same directory, for a person to inspect) and the rest of the store
    works on. The message names the secret or lease, never its data. For a
    secret this means its value is lost: a ``get`` now returns None.
    """

    code = "corrupt_store_file"


class SecretDecryptionError(StoreError):
    """A secret cannot be decrypted with this store's key; nothing was changed.

    Either the store has the wrong ``encryption_key`` (or none) for the file,
    or the ciphertext was altered. Not retryable: the same key fails again.
    """

    code = "secret_decryption_failed"
    retryable = False


class DamagedFile(Exception):
    """Internal: the bytes are not a valid file of the expected kind. ``reason`` says why.

    Never leaves the store; it becomes :class:`CorruptStoreFile`.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Cipher:
    """AES-GCM with one key, from the optional ``cryptography`` package (imported here).

    Raises :class:`ConfigurationError` when ``cryptography`` is missing or the
    key is not 16, 24 or 32 bytes.
    """

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
            raise ConfigurationError(
                "encryption_key must be 16, 24 or 32 random bytes (AES-128/192/256), "
                "e.g. os.urandom(32)"
            )
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ConfigurationError(
                "FileSecretStore(encryption_key=...) needs the 'cryptography' package: "
                "pip install cryptography"
            ) from exc
        self._aead = AESGCM(key)
        #: Names the key in each file it encrypted.
        self.key_id = hashlib.sha256(b"roomsecrets file store key id\0" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Cipher(key_id={self.key_id!r})"

    def seal(self, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
        """Return ``(nonce, ciphertext)``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, associated)

    def open(self, nonce: bytes, ciphertext: bytes, associated: bytes) -> Optional[bytes]:
        """Return the plaintext, or None if the key or the associated data do not match."""
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            return None


# --- header and checksum -------------------------------------------------------------


def _canonical(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode(
        "ascii"
    )


def _pack(kind: str, body: dict[str, Any]) -> bytes:
    payload = _canonical(body)
    head = f"{_MAGIC} {FORMAT} {kind} {len(payload)}".encode("ascii")
    digest = hashlib.sha256(head + b"\n" + payload).hexdigest().encode("ascii")
    return head + b" " + digest + b"\n" + payload


def _unpack(kind: str, content: bytes) -> dict[str, Any]:
    """The body of a file of ``kind``; raises DamagedFile, or StoreError for a newer format."""
    line, newline, payload = content.partition(b"\n")
    fields = line.split(b" ")
    if not newline or len(fields) != 5 or fields[0] != _MAGIC.encode("ascii"):
        raise DamagedFile("no valid header" if content else "empty file")
    magic, format_field, kind_field, length_field, digest = fields
    if not format_field.isdigit() or not length_field.isdigit():
        raise DamagedFile("no valid header")
    if int(format_field) > FORMAT:
        raise StoreError(
            f"a store file has format {int(format_field)}; this roomsecrets reads up to "
            f"{FORMAT} (written by a newer version?)"
        )
    if kind_field != kind.encode("ascii"):
        raise DamagedFile(f"holds a {kind_field.decode('ascii', 'replace')!r}, not a {kind}")
    if len(payload) != int(length_field):
        raise DamagedFile(f"truncated or padded: {len(payload)} of {int(length_field)} bytes")
    head = b" ".join((magic, format_field, kind_field, length_field))
    if hashlib.sha256(head + b"\n" + payload).hexdigest().encode("ascii") != digest:
        raise DamagedFile("checksum mismatch")
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise DamagedFile("body is not JSON") from exc
    if not isinstance(body, dict):
        raise DamagedFile("body is not a JSON object")
    return body


def _text(body: dict[str, Any], field: str, *, optional: bool = False) -> Any:
    value = body.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise DamagedFile(f"bad field {field!r}")
    return value


def _int(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if type(value) is not int or value < 0:
        raise DamagedFile(f"bad field {field!r}")
    return value


def _b64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise DamagedFile(f"bad field {field!r}")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise DamagedFile(f"bad base64 in {field!r}") from exc


# --- secrets --------------------------------------------------------------------------


def _key_fields(key: SecretKey) -> dict[str, Optional[str]]:
    return {
        "room": key.room,
        "owner": key.owner,
        "secret_id": key.secret_id,
        "delegated_to": key.delegated_to,
    }


def _associated(key: SecretKey, type: str, name: Optional[str], version: int) -> bytes:
    return _canonical(
        {"format": FORMAT, "key": _key_fields(key), "type": type, "name": name, "version": version}
    )


def encode_secret(record: SecretRecord, cipher: Optional[Cipher]) -> bytes:
    """The file content for ``record``, its data encrypted when ``cipher`` is given."""
    data, encryption = record.data, None
    if cipher is not None:
        associated = _associated(record.key, record.type, record.name, record.version)
        nonce, data = cipher.seal(record.data, associated)
        encryption = {
            "algorithm": _ALGORITHM,
            "key_id": cipher.key_id,
            "nonce": base64.b64encode(nonce).decode("ascii"),
        }
    return _pack(
        _SECRET,
        {
            "key": _key_fields(record.key),
            "type": record.type,
            "name": record.name,
            "version": record.version,
            "data": base64.b64encode(data).decode("ascii"),
            "encryption": encryption,
        },
    )


def decode_secret(content: bytes, cipher: Optional[Cipher], *, what: str) -> SecretRecord:
    """The record in ``content``.

    Raises :class:`DamagedFile` when the bytes are not a valid secret file and
    :class:`SecretDecryptionError` (naming ``what``, the secret's id) when it is
    encrypted and ``cipher`` cannot open it. A plaintext file is read either
    way, so a store that turns encryption on still reads what it wrote before.
    """
    body = _unpack(_SECRET, content)
    fields = body.get("key")
    if not isinstance(fields, dict):
        raise DamagedFile("bad field 'key'")
    key = SecretKey(
        room=_text(fields, "room"),
        owner=_text(fields, "owner"),
        secret_id=_text(fields, "secret_id"),
        delegated_to=_text(fields, "delegated_to", optional=True),
    )
    type_, name = _text(body, "type"), _text(body, "name", optional=True)
    version = _int(body, "version")
    if version == 0:
        raise DamagedFile("bad field 'version'")
    data = _b64(body.get("data"), "data")
    encryption = body.get("encryption")
    if encryption is not None:
        if not isinstance(encryption, dict) or encryption.get("algorithm") != _ALGORITHM:
            raise DamagedFile("bad field 'encryption'")
        key_id = _text(encryption, "key_id")
        nonce = _b64(encryption.get("nonce"), "nonce")
        if cipher is None:
            raise SecretDecryptionError(
                f"secret {what} is encrypted (key id {key_id}) and this store has no "
                "encryption_key"
            )
        if key_id != cipher.key_id:
            raise SecretDecryptionError(
                f"secret {what} was encrypted with key id {key_id}; this store's key "
                f"id is {cipher.key_id}"
            )
        plain = cipher.open(nonce, data, _associated(key, type_, name, version))
        if plain is None:
            raise SecretDecryptionError(
                f"secret {what} failed authentication with key id {key_id}: the file "
                "was altered or moved from another secret's path"
            )
        data = plain
    return SecretRecord(key=key, type=type_, name=name, data=data, version=version)


# --- the version counter of one (room, owner) directory -------------------------------


class VersionCounter:
    """What one directory's ``.versions`` file says (see ``FileSecretStore``'s rules).

    ``deleted``: every version of a key that has no file here now is at most
    this. ``issued``: every version ever written here is at most this.
    """

    __slots__ = ("deleted", "issued")

    def __init__(self, *, deleted: int, issued: int) -> None:
        self.deleted = deleted
        self.issued = issued

    def __repr__(self) -> str:
        return f"VersionCounter(deleted={self.deleted}, issued={self.issued})"


def encode_versions(counter: VersionCounter) -> bytes:
    """The file content for ``counter``."""
    return _pack(_VERSIONS, {"deleted": counter.deleted, "issued": counter.issued})


def decode_versions(content: bytes) -> VersionCounter:
    """The counter in ``content``; raises :class:`DamagedFile`."""
    body = _unpack(_VERSIONS, content)
    deleted, issued = _int(body, "deleted"), _int(body, "issued")
    if deleted > issued:
        raise DamagedFile("deleted above issued")
    return VersionCounter(deleted=deleted, issued=issued)


# --- leases ---------------------------------------------------------------------------


def encode_lease(lease: Lease) -> bytes:
    """The file content for ``lease``."""
    return _pack(
        _LEASE, {"name": lease.name, "holder": lease.holder, "expires_at": lease.expires_at}
    )


def decode_lease(content: bytes) -> Lease:
    """The lease in ``content``; raises :class:`DamagedFile`."""
    body = _unpack(_LEASE, content)
    expires_at = body.get("expires_at")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, (int, float))
        or not math.isfinite(expires_at)
    ):
        raise DamagedFile("bad field 'expires_at'")
    return Lease(name=_text(body, "name"), holder=_text(body, "holder"), expires_at=expires_at)
