"""Secrets a Lepton job prints, and a backend error body that echoes the workspace token, never leave the
server in any form (protocol-faithful fake)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fixtures.lepton.fake_lepton import FakeLepton
from tests.leakcheck import PLAIN_NAME, leak_env, run_leaky_job
from tests.lepton.test_lepton_mcp import IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_printed_secrets_and_echoed_token_never_leave(
    lepton_env: dict[str, str], canaries: dict[str, str], fake_lepton: FakeLepton, tmp_path: Path
) -> None:
    env, canaries = leak_env(lepton_env, canaries)
    names = ["NGC_KEY", "HF_TOKEN", "SECRET_KEY", PLAIN_NAME]
    seed = uuid.uuid4().hex
    submit = {
        "platform": "lepton",
        "image": IMAGE,
        "command": "python train.py",
        "env": {"FAKE_PRINT_SECRETS": "encoded", "FAKE_PEM_SEED": seed, "FAKE_DURATION_S": "6"},
        "secret_env": names,
    }
    canaries["LEPTON_AUTH_TOKEN"] = env["LEPTON_AUTH_TOKEN"]

    async def backend_echoes_the_token() -> None:
        # A proxy in front of the API answers 5xx with the request's Authorization header in the body, while
        # the agent waits (progress notifications) and reads status.
        fake_lepton.echo_auth = True
        fake_lepton.fail_next_5xx = 12  # reads retry 4 times: three reads fail for good

    seen = await run_leaky_job(env, canaries, tmp_path, submit, pem_seed=seed, while_waiting=backend_echoes_the_token)
    assert fake_lepton.fail_next_5xx == 0, "the fake never answered 5xx"
    assert "upstream connect error" in seen and "Authorization" in seen, "the echoing error never reached the agent"
