"""A property-based run of the room server against its own ``/openapi.json``.

schemathesis reads the document from the running server (``from_url``; aiohttp
is not ASGI, so ``from_asgi`` does not apply) and sends generated requests with
a valid participant token. Every answer must be below 500 and conform to the
document: a documented status, its content type, its schema, its headers.
The examples per operation and the deadline are fixed, so the run is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aiohttp")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from roomsecrets.core.grants import SecretsGrant  # noqa: E402
from tests.adapters.server_kit import ROOM, Served  # noqa: E402
from tests.hostile.threaded_server import ServerThread, served_in_thread  # noqa: E402

_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Served, ServerThread]]:
    with served_in_thread() as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(server: tuple[Served, ServerThread]) -> Any:
    served, _ = server
    return schemathesis.openapi.from_url(served.url + "/openapi.json", timeout=10)


# Hypothesis drives each operation's strategy directly rather than through
# schemathesis's pytest plugin, which reaches into pytest internals that pytest 9.2
# removed (``Function._nodeid``); the checks and the bounds are the same.
_SETTINGS = settings(
    max_examples=50,
    deadline=5000,  # ms per example: a slow answer is a hang, not a timing assertion
    derandomize=True,  # the same examples on every CI run
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_every_operation_answers_below_500_and_as_documented(
    api_schema: Any, server: tuple[Served, ServerThread]
) -> None:
    served, _ = server
    token = served.token("alice", grant=SecretsGrant.allow_all())
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, "the document lists the server's operations"
    sent: dict[str, int] = {}

    for operation in operations:

        @_SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            if "room" in (case.path_parameters or {}):
                # Most generated rooms differ from the token's (a 401 every time); pin
                # the room so the bodies reach the handlers.
                case.path_parameters["room"] = ROOM
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"}, checks=_CHECKS, timeout=10
            )
            sent[case.operation.label] = sent.get(case.operation.label, 0) + 1

        check()
    assert set(sent) == {operation.label for operation in operations}
