"""Restarts, interrupted launches, canary secrets and bad input against the real SLURM dev cluster."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

from tao_mcp.config import load_settings
from tao_mcp.drivers.slurm import SlurmDriver
from tao_mcp.server import build_server
from tao_mcp.service.store import JobRecord, JobStore
from tests.backends import sacct_names
from tests.helpers import assert_no_canary, call, call_error, launch_request, structured, wait_done

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


async def test_interrupted_launch_is_reconciled_by_name_not_relaunched(slurm_env: dict[str, str]) -> None:
    settings = load_settings(slurm_env)
    store = JobStore(Path(settings["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    driver = SlurmDriver(settings)
    request = launch_request(command="echo reconciled", options=driver.parse_options({}))
    job_id = request.job_id
    store.insert(JobRecord.launching(request, platform="slurm", digest="x", command=request.command))
    # The process "crashes" right after sbatch: the backend id is never stored.
    backend_id = await driver.launch(request)
    await driver.aclose()
    store.close()
    async with Client(build_server(slurm_env), mode="legacy") as c:
        done = await wait_done(c, job_id)
        assert done["backend_id"] == backend_id
        assert done["status"] == "Complete"
    assert len(sacct_names(f"tao-{job_id}")) == 1


@pytest.mark.parametrize(
    ("args", "code", "mentions"),
    [
        ({"platform": "nowhere"}, "E_UNKNOWN_PLATFORM", "slurm"),
        ({"command": "   "}, "E_BAD_INPUT", "command"),
        ({"gpu_count": -1}, "E_BAD_INPUT", "gpu_count"),
        ({"name": "x;rm -rf /"}, "E_BAD_INPUT", "name"),
        ({"env": {"BAD-NAME$(id)": "1"}}, "E_BAD_INPUT", "env name"),
        ({"partition": "debug;touch /tmp/pwned"}, "E_BAD_INPUT", "partition"),
        ({"account": "a`id`"}, "E_BAD_INPUT", "account"),
        ({"secret_env": ["NOT_SET_ANYWHERE_123"]}, "E_POLICY", "TAO_MCP_FORWARDABLE_SECRETS"),
        ({"secret_env": ["WANDB_API_KEY"]}, "E_MISSING_CREDENTIALS", "WANDB_API_KEY"),
        ({"options": {"partition": "a b"}}, "E_BAD_INPUT", "options.partition"),
        ({"options": {"qos": "high"}}, "E_BAD_INPUT", "options.qos: not a SLURM option"),
        ({"time_limit": "soon"}, "E_BAD_INPUT", "time_limit"),
        ({"bogus_option": 1}, None, "bogus_option"),
    ],
)
async def test_bad_input_is_coded_and_launches_nothing(
    slurm_env: dict[str, str], args: dict[str, Any], code: str | None, mentions: str
) -> None:
    async with Client(build_server(slurm_env), mode="legacy") as c:
        result = await c.call_tool("submit_job", {"platform": "slurm", "command": "echo x", "gpu_count": 0, **args})
        assert result.is_error
        text = result.content[0].text
        if code:
            assert f"{code}:" in text and "Fix:" in text, text
        assert mentions in text
        assert (await call(c, "list_jobs"))["jobs"] == []


async def test_a_gpu_layout_the_nodes_cannot_hold_is_refused_before_anything_exists(
    slurm_env: dict[str, str],
) -> None:
    """3 GPUs on nodes of 2 cannot be split evenly: refused by the dry run and by the launch, with no job record,
    no staged files and no sbatch (sacct has no job working in this test's own results folder)."""
    base = Path(slurm_env["SLURM_BASE_RESULTS_DIR"]) / f"gpu-layout-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    env = {**slurm_env, "SLURM_GPUS_PER_NODE": "2", "SLURM_BASE_RESULTS_DIR": str(base)}
    args = {"platform": "slurm", "command": "echo never", "gpu_count": 3}
    async with Client(build_server(env), mode="legacy") as c:
        dry = await call_error(c, "submit_job", **args, dry_run=True)
        launched = await call_error(c, "submit_job", **args)
        workflow = await call_error(c, "submit_workflow", name="w", steps=[{"id": "a", **args}])
        jobs = (await call(c, "list_jobs"))["jobs"]
    for text in (dry, launched):
        assert text.startswith("E_GPU_LAYOUT: 3 GPUs per node do not fit nodes of 2 GPUs"), text
    assert workflow.startswith("E_GPU_LAYOUT: step 'a': "), workflow
    assert jobs == []
    assert list(base.iterdir()) == []
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "--allusers", "-S", "now-1hours", "-o", "WorkDir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(base) not in out


async def test_missing_credentials_name_the_variables(base_env: dict[str, str], canaries: dict[str, str]) -> None:
    env = {**base_env, **canaries, "SLURM_USER": "someone"}
    async with Client(build_server(env), mode="legacy") as c:
        result = await c.call_tool("submit_job", {"platform": "slurm", "command": "echo x"})
        text = result.content[0].text
        assert result.is_error and "E_MISSING_CREDENTIALS" in text
        assert "SLURM_HOSTNAME" in text and "SSH_KEY_PATH" in text and "someone" not in text
        detail = structured(await c.call_tool("list_platforms", {"platform": "slurm"}))["platform"]
        present = {cred["name"]: cred["present"] for cred in detail["credentials"]}
        assert present["SLURM_USER"] is True and present["SLURM_HOSTNAME"] is False
        assert present["NGC_KEY"] is True
        assert_no_canary(json.dumps(detail), canaries)


async def test_unknown_job_id_is_coded(base_env: dict[str, str]) -> None:
    async with Client(build_server(base_env)) as c:
        for tool in ("job_status", "wait_for_job", "job_logs", "failure_analysis", "cancel_job"):
            result = await c.call_tool(tool, {"job_id": "doesnotexist"})
            assert (
                result.is_error and "E_UNKNOWN_JOB" in result.content[0].text and "list_jobs" in result.content[0].text
            )


async def test_argument_validation_errors_are_redacted(base_env: dict[str, str], canaries: dict[str, str]) -> None:
    env = {**base_env, **canaries}
    for mode in ("legacy", "modern"):
        kwargs = {"mode": "legacy"} if mode == "legacy" else {}
        async with Client(build_server(env), **kwargs) as c:
            result = await c.call_tool("wait_for_job", {"job_id": "x", "timeout_s": canaries["HF_TOKEN"]})
        assert result.is_error
        assert_no_canary(result.content[0].text, canaries)
        assert "timeout_s" in result.content[0].text
