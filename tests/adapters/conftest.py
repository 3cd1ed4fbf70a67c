"""Fixtures for the adapter tests: a moto server in server mode for the AWS store.

boto3 and moto are imported only when a test asks for them, so the other adapter
tests run without them. Nothing here ever talks to real AWS: every client has
dummy credentials and an ``endpoint_url`` on 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server (all services) running for the whole session."""
    pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    # Port 0: the OS picks a free port when the server binds; no race with
    # another process grabbing a port we probed.
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def secretsmanager_client(endpoint: str, *, max_attempts: int = 5) -> Any:
    """A real boto3 client for the moto server at ``endpoint`` (dummy credentials).

    Retries matter even against moto: moto server handles requests in threads
    without a lock, and a read racing a write can get an HTTP 500.
    """
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=32,
        ),
    )


@pytest.fixture(scope="session")
def moto_client(moto_endpoint: str) -> Any:
    """One boto3 Secrets Manager client on the session's moto server (thread-safe)."""
    return secretsmanager_client(moto_endpoint)
