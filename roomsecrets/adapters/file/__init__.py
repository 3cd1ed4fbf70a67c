"""The file store: one 0600 file per secret in a directory (standard library only).

``store`` is ``FileSecretStore``; ``layout`` maps keys to paths, ``format`` reads
and writes a secret file's bytes, ``io`` does the durable, atomic system calls.
Never imports the server, the remote client or the AWS store
(``tests/test_architecture.py`` checks).
"""

from .store import (
    CorruptStoreFile,
    FileSecretStore,
    InsecureStoreWarning,
    SecretDecryptionError,
)

__all__ = ["CorruptStoreFile", "FileSecretStore", "InsecureStoreWarning", "SecretDecryptionError"]
