"""A test that leaks a secret on purpose: tests/test_leak_scan.py runs it alone (it is not
collected otherwise: its name does not start with test_) to prove the scan fails a run,
with and without pytest-xdist."""

import logging

from tests.support import leak_watch


def test_a_secret_reaches_a_log_record() -> None:
    leak_watch.remember_secret("planted-secret-value-0123456789")
    logging.getLogger("roomsecrets.planted").warning("oops: planted-secret-value-0123456789")
