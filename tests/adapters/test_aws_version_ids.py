"""Which AWS version ids are records' (UUIDs the store wrote), and the version each
stands for: matched by pattern, they must agree with parsing them as UUIDs."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from roomsecrets.adapters.aws.store import _is_record_id, _version_id, _version_of


def parsed_as_uuid(version_id: str) -> bool:
    """The definition: what str(uuid.UUID(...)) spells exactly."""
    try:
        return str(uuid.UUID(version_id)) == version_id
    except ValueError:
        return False


SPELLINGS = st.uuids().flatmap(
    lambda u: st.sampled_from([
        str(u), str(u).upper(), u.hex, "{" + str(u) + "}", u.urn, str(u) + "\n", " " + str(u),
        str(u).replace("-", "_"), str(u)[:-1] + "\uff10", str(u)[:8] + "-" + str(u)[8:],
    ])
)


@given(st.one_of(SPELLINGS, st.text(max_size=40)))
def test_a_record_id_is_exactly_a_uuid_as_str_spells_it(version_id: str) -> None:
    assert _is_record_id(version_id) is parsed_as_uuid(version_id)


@given(st.uuids())
def test_a_record_version_is_the_uuids_integer_and_round_trips(u: uuid.UUID) -> None:
    assert _version_of(str(u)) == u.int
    assert _version_id(u.int) == str(u)


def test_what_is_not_a_string_is_not_a_record_id() -> None:
    assert not _is_record_id(None)
    assert not _is_record_id(uuid.uuid4())
