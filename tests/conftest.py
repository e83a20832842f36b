"""Shared test fixtures: an isolated server environment, canary secrets, dev-backend settings (helpers: helpers.py;
the backends of Docker, Kubernetes, Lepton and Brev: backends.py, imported here so every directory sees them)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.backends import (  # noqa: F401  (fixtures, registered by being imported here)
    brev_env,
    docker_cleanup,
    docker_client,
    docker_env,
    docker_settings,
    fake_brev,
    fake_lepton,
    k8s_env,
    lepton_env,
)
from tests.helpers import clean_environ, dev_settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def canaries() -> dict[str, str]:
    """Unique secret values planted in the server environment; tests look for them everywhere."""
    tag = uuid.uuid4().hex[:10]
    return {
        "NGC_KEY": f"canary-ngc-{tag}-value",
        "HF_TOKEN": f"canary-hf-{tag}-value",
        "SECRET_KEY": f"canary-s3secret-{tag}-value",
    }


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def base_env(state_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = clean_environ()
    env["TAO_MCP_STATE_DIR"] = str(state_dir)
    env["TAO_MCP_ENV_FILE"] = str(tmp_path / "no.env")  # never the developer's ~/.config/tao/.env
    # The 3 s default probe bound is for users; a healthy API server on a loaded 2-core test machine can take longer,
    # which refused submits before the test began. Tests of the bound itself set their own (tests/unit/test_readiness.py).
    env["TAO_MCP_PROBE_TIMEOUT_S"] = "30"
    return env


@pytest.fixture
def slurm_env(base_env: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    return {**base_env, **dev_settings("slurm", "scripts/dev/slurm-cluster up"), **canaries}
