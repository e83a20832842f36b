"""Shared test fixtures: dev-backend settings, canary secrets, an MCP client helper."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from tao_mcp.drivers.base import LaunchRequest

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / ".dev"

# Variables of the developer's own environment that must not leak into a test server.
ISOLATED_PREFIXES = ("SLURM_", "SSH_", "LEPTON_", "BREV_", "TAO_", "S3_", "AWS_", "KUBECONFIG", "DOCKER_HOST")
ISOLATED_NAMES = {"ACCESS_KEY", "SECRET_KEY", "NGC_KEY", "HF_TOKEN", "CLOUD_REGION"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def dev_settings(name: str, start: str) -> dict[str, str]:
    """Settings a repo dev script wrote. A backend that should be up and is not fails the test (never skips)."""
    path = DEV / f"{name}.env"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `{start}` first (README: Development)")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_PREFIXES) and k not in ISOLATED_NAMES}


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
    return env


@pytest.fixture
def slurm_env(base_env: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    return {**base_env, **dev_settings("slurm", "scripts/dev/slurm-cluster up"), **canaries}


def launch_request(job_id: str | None = None, command: str = "echo", **fields: Any) -> LaunchRequest:
    """A minimal CPU-only LaunchRequest for driver-level tests."""
    job_id = job_id or uuid.uuid4().hex[:12]
    defaults: dict[str, Any] = {
        "image": None,
        "gpu_count": 0,
        "num_nodes": 1,
        "env": {"TAO_JOB_ID": job_id},
        "secret_env": {},
        "time_limit_minutes": 5,
        "options": {},
    }
    return LaunchRequest(job_id=job_id, backend_name=f"tao-{job_id}", command=command, **{**defaults, **fields})


def structured(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool call (fails the test with the error text otherwise)."""
    if result.is_error:
        pytest.fail(f"tool error: {result.content[0].text}")
    return result.structured_content


def assert_no_canary(text: str, canaries: Mapping[str, str]) -> None:
    for name, value in canaries.items():
        assert value not in text, f"the value of {name} leaked"
