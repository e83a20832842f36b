"""Secrets a Brev job prints never leave the server in any form (fake CLI; the job runs for real)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fixtures import leaks
from tests.brev.brevkit import FakeBrev
from tests.brev.test_brev_mcp import IMAGE
from tests.leakcheck import PLAIN_NAME, leak_env, run_leaky_job

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_printed_secrets_in_every_form_never_leave(
    brev_env: dict[str, str], canaries: dict[str, str], fake: FakeBrev, tmp_path: Path
) -> None:
    env, canaries = leak_env(brev_env, canaries)
    names = ["NGC_KEY", "HF_TOKEN", "SECRET_KEY", PLAIN_NAME]
    seed = uuid.uuid4().hex
    submit = {
        "platform": "brev",
        "image": IMAGE,
        "command": leaks.command(names, seed),
        "secret_env": names,
        "options": {"instance": "gpu-box", "gpu_name": "L4"},
    }
    canaries["BREV_API_TOKEN"] = env["BREV_API_TOKEN"]
    await run_leaky_job(env, canaries, tmp_path, submit, pem_seed=seed)
