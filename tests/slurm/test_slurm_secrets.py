"""Secrets a SLURM job prints never leave the server in any form, and grep cannot rebuild them."""

from __future__ import annotations

import string
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

from fixtures import leaks
from tao_mcp.server import build_server
from tests.helpers import call, wait_done
from tests.leakcheck import PLAIN_NAME, leak_env, run_leaky_job

pytestmark = [pytest.mark.anyio, pytest.mark.slurm, pytest.mark.slow]


async def test_printed_secrets_in_every_form_never_leave(
    slurm_env: dict[str, str], canaries: dict[str, str], tmp_path: Path
) -> None:
    env, canaries = leak_env(slurm_env, canaries)
    names = ["NGC_KEY", "HF_TOKEN", "SECRET_KEY", PLAIN_NAME]
    seed = uuid.uuid4().hex
    submit = {"platform": "slurm", "gpu_count": 0, "command": leaks.command(names, seed), "secret_env": names}
    await run_leaky_job(env, canaries, tmp_path, submit, pem_seed=seed)


async def test_grep_cannot_rebuild_a_printed_secret(slurm_env: dict[str, str]) -> None:
    """The attack: a job prints NGC_KEY; the agent greps `NGC_KEY=<guess>` growing one character at a time.
    Every guess must get the same answer, so the value cannot be rebuilt."""
    alphabet = string.ascii_lowercase + string.digits
    secret = "".join(alphabet[b % len(alphabet)] for b in uuid.uuid4().bytes)  # 16 characters
    env = {**slurm_env, "NGC_KEY": secret}
    async with Client(build_server(env), mode="legacy") as c:
        command = "echo NGC_KEY=$NGC_KEY; echo key: $NGC_KEY; echo done"
        sub = await call(c, "submit_job", platform="slurm", gpu_count=0, command=command, secret_env=["NGC_KEY"])
        assert (await wait_done(c, sub["job_id"]))["status"] == "Complete"

        async def answer(needle: str) -> tuple[Any, ...]:
            page = await call(c, "job_logs", job_id=sub["job_id"], grep=needle)
            return page["lines"], page["truncated"]

        # Position by position, the true character answers like every other character.
        known = ""
        for position in range(3):
            answers = {ch: await answer(f"NGC_KEY={known}{ch}") for ch in alphabet}
            assert len({repr(a) for a in answers.values()}) == 1, answers
            known += secret[position]
        for n in range(4, len(secret) + 1):  # and any prefix of the value, with or without the name
            assert await answer(secret[:n]) == await answer(secret[:n][::-1]), n
        assert (await answer("NGC_KEY=[REDACTED]"))[0] and (await answer("key: [REDACTED]"))[0]
