"""The MCP Inspector CLI, a client we did not write, drives the real entry point over stdio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

INSPECTOR = REPO / ".tools" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"


def inspector(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not INSPECTOR.exists():
        pytest.fail(f"{INSPECTOR} is missing: run `make inspector`")
    server_env = [item for name in ("TAO_MCP_STATE_DIR", "TAO_MCP_ENV_FILE") for item in ("-e", f"{name}={env[name]}")]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [str(INSPECTOR), "--cli", *server_env, sys.executable, "-m", "tao_mcp", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env={**env, "HOME": str(home)},
    )


def test_tools_list_strict(base_env: dict[str, str], tmp_path: Path) -> None:
    run = inspector(base_env, tmp_path, "--method", "tools/list", "--strict")
    assert run.returncode == 0, run.stderr
    names = {t["name"] for t in json.loads(run.stdout)["tools"]}
    assert {"list_platforms", "submit_job", "job_status", "wait_for_job"} <= names


def test_list_platforms_call(base_env: dict[str, str], tmp_path: Path) -> None:
    run = inspector(
        base_env,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "list_platforms",
        "--tool-arg",
        "platform=slurm",
        "--format",
        "json",
        "-q",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)["result"]
    assert result["structuredContent"]["platform"]["name"] == "slurm"


def test_job_status_call_on_unknown_job_is_a_tool_error(base_env: dict[str, str], tmp_path: Path) -> None:
    run = inspector(
        base_env, tmp_path, "--method", "tools/call", "--tool-name", "job_status", "--tool-arg", "job_id=nope"
    )
    assert run.returncode == 5, (run.returncode, run.stdout, run.stderr)
    assert "E_UNKNOWN_JOB" in run.stdout + run.stderr


@pytest.mark.anyio
@pytest.mark.slurm
async def test_job_status_of_a_real_slurm_job(slurm_env: dict[str, str], tmp_path: Path) -> None:
    from mcp.client import Client

    from tao_mcp.server import build_server
    from tests.helpers import DEV, structured

    async with Client(build_server(slurm_env), mode="legacy") as c:
        sub = structured(await c.call_tool("submit_job", {"platform": "slurm", "command": "echo hi", "gpu_count": 0}))
    # The Inspector's server gets the cluster settings from the dev env file, the same state dir as above.
    env = {**slurm_env, "TAO_MCP_ENV_FILE": str(DEV / "slurm.env")}
    run = inspector(
        env,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "job_status",
        "--tool-arg",
        f"job_id={sub['job_id']}",
        "--format",
        "json",
        "-q",
    )
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)["result"]["structuredContent"]
    assert status["job_id"] == sub["job_id"] and status["backend_id"] == sub["backend_id"]
    assert status["status"] in ("Pending", "Running", "Complete")
