"""Readiness on the dev SLURM cluster: `ready` means the login node answered `sinfo`; a closed SSH port is
`unreachable` with the probe's reason; a dry run needs no SSH at all; the credentials listing shows each
variable once."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.helpers import call, call_error
from tests.helpers import mcp_client as client

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def listing(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in result["platforms"]}


async def test_ready_means_the_cluster_answered(slurm_env: dict[str, str]) -> None:
    async with client(slurm_env) as c:
        platforms = listing(await call(c, "list_platforms"))
        assert platforms["slurm"]["state"] == "ready", platforms["slurm"]
        assert platforms["lepton"]["state"] == "not_configured" and "LEPTON_AUTH_TOKEN" in platforms["lepton"]["reason"]
        detail = await c.call_tool("list_platforms", {"platform": "slurm"})
    text = detail.content[0].text
    names = [
        line.split(" — ")[0].strip() for line in text.splitlines() if " — required: " in line or " — optional: " in line
    ]
    assert len(names) == len(set(names)), f"a variable is listed twice: {names}"
    assert "SLURM_USER — required: present" in text
    assert "SLURM_ACCOUNT — optional: not set (" in text  # what it is for, not a negated condition
    assert "MISSING (optional" not in text


async def test_closed_ssh_port_is_unreachable_and_a_dry_run_needs_no_ssh(slurm_env: dict[str, str]) -> None:
    env = {k: v for k, v in slurm_env.items() if k != "SLURM_BASE_RESULTS_DIR"}
    env["SLURM_SSH_PORT"] = str(closed_port())
    async with client(env) as c:
        slurm = listing(await call(c, "list_platforms"))["slurm"]
        assert slurm["state"] == "unreachable" and slurm["ready"] is False, slurm
        assert env["SLURM_SSH_PORT"] in slurm["reason"], slurm
        detail = await call(c, "list_platforms", platform="slurm")
        assert "dry_run" not in detail["next"] and "tell the user" in detail["next"]
        dry = await call(c, "submit_job", platform="slurm", command="hostname", dry_run=True)
        assert dry["dry_run"] is True and "$HOME/tao-mcp" in dry["results_location"]
        assert "$HOME/tao-mcp/" in dry["preview"]["launch"]  # rendered without SSH
        assert dry["job_id"] is None and dry["plan_id"]
        text = await call_error(c, "submit_job", platform="slurm", command="hostname")
        assert text.startswith("E_BACKEND_UNREACHABLE:") and "nothing was sent" in text
        assert (await call(c, "list_jobs"))["jobs"] == []
