"""Fixtures of the Brev tests: `fake` is the fake CLI's state directory (tests/backends.py: fake_brev, brev_env)."""

from __future__ import annotations

import pytest

from tests.backends import FakeBrev


@pytest.fixture
def fake(fake_brev: FakeBrev) -> FakeBrev:
    return fake_brev
