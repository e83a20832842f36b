"""Lepton test fixtures: the fake workspace API in-process on a free port, and server settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.lepton.fake_lepton import FakeLepton

TOKEN = "lepton-test-token-0123456789"


@pytest.fixture
def fake_lepton() -> Iterator[FakeLepton]:
    fake = FakeLepton(token=TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def lepton_env(base_env: dict[str, str], canaries: dict[str, str], fake_lepton: FakeLepton) -> dict[str, str]:
    return {
        **base_env,
        **canaries,
        "LEPTON_WORKSPACE_URL": fake_lepton.url,
        "LEPTON_WORKSPACE_ID": fake_lepton.workspace_id,
        "LEPTON_AUTH_TOKEN": TOKEN,
        "LEPTON_HTTP_TIMEOUT_S": "2",
    }
