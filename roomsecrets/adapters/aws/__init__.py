"""The AWS Secrets Manager store: one AWS secret per record (boto3, extra ``aws``).

``store`` is ``SecretsManagerStore``; ``names`` maps keys to secret names and
back. Never imports the server, the remote client or the file store
(``tests/test_architecture.py`` checks).
"""

from .store import MAX_VALUE_BYTES, SecretsManagerStore

__all__ = ["MAX_VALUE_BYTES", "SecretsManagerStore"]
