"""Fixtures of the callback tests (helpers live in herald_cb_helpers.py)."""

import pytest

from herald_cb_helpers import Receiver, Runner


@pytest.fixture
def receiver():
    r = Receiver()
    r.up()
    yield r
    r.down()
    assert r.errors == [], "the receiver saw invalid requests: %s" % r.errors[:5]


@pytest.fixture
def runner(tmp_path, receiver):
    return Runner(tmp_path, receiver)
