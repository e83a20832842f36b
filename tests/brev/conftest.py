"""Fixtures of the Brev tests: the fake CLI's state directory and a server environment using it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brev.brevkit import FAKE, TOKEN, FakeBrev


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeBrev]:
    root = tmp_path / "fake-brev"
    root.mkdir()
    kit = FakeBrev(root)
    kit.configure(valid_token=TOKEN, deploy_s=1.0, ssh_delay_s=0.5, pull_seconds=3600)
    yield kit
    kit.kill_everything()


@pytest.fixture
def brev_env(base_env: dict[str, str], canaries: dict[str, str], fake: FakeBrev, tmp_path: Path) -> dict[str, str]:
    return {
        **base_env,
        **canaries,
        "PATH": f"{FAKE}:{base_env.get('PATH', '/usr/bin:/bin')}",
        "FAKE_BREV_STATE": str(fake.root),
        "BREV_API_TOKEN": TOKEN,
        "BREV_RESULTS_DIR": str(tmp_path / "results"),
        "BREV_CLI_TIMEOUT": "20",
    }
