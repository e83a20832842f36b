"""Secrets a Kubernetes job prints never leave the server in any form."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fixtures import leaks
from tests.k8s.test_k8s_mcp import job_args
from tests.leakcheck import PLAIN_NAME, leak_env, run_leaky_job

pytestmark = [pytest.mark.anyio, pytest.mark.k8s, pytest.mark.slow]


async def test_printed_secrets_in_every_form_never_leave(
    k8s_env: dict[str, str],
    canaries: dict[str, str],
    tmp_path: Path,
) -> None:
    env, canaries = leak_env(k8s_env, canaries)
    names = ["NGC_KEY", "HF_TOKEN", "SECRET_KEY", PLAIN_NAME]
    seed = uuid.uuid4().hex
    submit = job_args(env, leaks.command(names, seed), image=env["TAO_MCP_TEST_PY_IMAGE"], secret_env=names)
    await run_leaky_job(env, canaries, tmp_path, submit, pem_seed=seed)
