"""``roomsecrets serve --store aws:PREFIX`` checks Secrets Manager when it starts (one
filtered ListSecrets), so a missing region or missing credentials stop it at once with
one line, rather than failing the first request a participant makes. Against moto in
server mode (``AWS_ENDPOINT_URL``); nothing here talks to real AWS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("boto3")

from tests.support import leak_watch

REPO = Path(__file__).resolve().parents[2]
KEY = secrets.token_hex(32)
leak_watch.remember_secret(KEY)
TIMEOUT = 60
PREFIX = "rs-start-check"


def aws_env(tmp_path: Path, **aws: str) -> dict[str, str]:
    """No AWS setting from this machine: only ``aws`` (and no config files)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ROOMSECRETS_"))}
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        ROOMSECRETS_JWT_KEY=KEY,
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(aws)
    return env


def serve(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "roomsecrets", "serve", "--port", "0", "--store",
         f"aws:{PREFIX}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_serve_starts_when_secrets_manager_answers(moto_endpoint: str, tmp_path: Path) -> None:
    process = serve(aws_env(tmp_path, AWS_ENDPOINT_URL=moto_endpoint, AWS_DEFAULT_REGION="us-east-1",
                            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"))
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert "roomsecrets: serving on http://127.0.0.1:" in first, first
        assert f"(store aws:{PREFIX};" in first
    finally:
        process.terminate()
        process.communicate(timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("missing", "said"),
    [
        ("region", "no AWS region: set AWS_DEFAULT_REGION (or a region in ~/.aws/config) "
                   "(Secrets Manager list_secrets failed: NoRegionError)"),
        ("credentials", "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                        "or AWS_PROFILE, or run where an instance or task role provides them "
                        "(Secrets Manager list_secrets failed: NoCredentialsError)"),
    ],
)
def test_serve_stops_at_start_without_a_region_or_credentials(
    moto_endpoint: str, tmp_path: Path, missing: str, said: str
) -> None:
    aws = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    if missing == "region":
        del aws["AWS_DEFAULT_REGION"]
    else:
        del aws["AWS_ACCESS_KEY_ID"], aws["AWS_SECRET_ACCESS_KEY"]
    process = serve(aws_env(tmp_path, **aws))
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:  # it started anyway: that is the failure
            process.kill()
            process.communicate()
    assert process.returncode == 1
    assert stdout == ""
    assert stderr == (
        f"roomsecrets: error: --store aws:{PREFIX}: AWS Secrets Manager cannot be used: "
        f"{said} (store_error)\n")
