"""The data path end to end: a real SLURM job reads a dataset from S3 (Ceph RGW) and writes results back."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.s3_round_trip import s3_client, s3_round_trip, with_s3
from tests.slurm.test_slurm_mcp import call, wait_done

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


@pytest.fixture
def s3_slurm_env(slurm_env: dict[str, str]) -> dict[str, str]:
    return with_s3(slurm_env)


@pytest.fixture
def bucket(s3_slurm_env: dict[str, str]) -> Any:
    return s3_client(s3_slurm_env), s3_slurm_env["S3_BUCKET_NAME"]


async def test_config_mode_job_reads_and_writes_s3(s3_slurm_env: dict[str, str]) -> None:
    async with Client(build_server(s3_slurm_env), mode="legacy") as c:
        await s3_round_trip(c, s3_slurm_env, {"platform": "slurm"})


async def test_status_reports_runner_phase(s3_slurm_env: dict[str, str], bucket: Any) -> None:
    s3, name = bucket
    prefix = f"phase-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=name, Key=f"{prefix}/in.txt", Body=b"x")
    async with Client(build_server(s3_slurm_env)) as c:
        sub = await call(
            c,
            "submit_job",
            platform="slurm",
            gpu_count=0,
            command="sleep 30",
            inputs={f"/tmp/tao-phase-{prefix}/in.txt": f"s3://{name}/{prefix}/in.txt"},
        )
        with anyio.fail_after(90):
            while True:
                status = await call(c, "job_status", job_id=sub["job_id"])
                if status["status"] == "Running" and "running command" in status["message"]:
                    break
                await anyio.sleep(1)
        await call(c, "cancel_job", job_id=sub["job_id"])


async def test_lustre_paths_over_the_slurm_link(slurm_env: dict[str, str]) -> None:
    async with Client(build_server(slurm_env), mode="legacy") as c:
        sub = await call(
            c,
            "submit_job",
            platform="slurm",
            gpu_count=0,
            command='mkdir -p "$TAO_RESULTS_ROOT/$TAO_JOB_ID" && echo 42 > "$TAO_RESULTS_ROOT/$TAO_JOB_ID/metric.txt"',
        )
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
        location = done["results_location"]
        assert location.startswith("lustre:///")
        listing = await call(c, "list_path", uri=location + "/")
        assert [e["name"] for e in listing["entries"]] == ["metric.txt"]
        check = await call(c, "check_path", uri=location + "//metric.txt")
        assert check["exists"] and check["size"] == 3
        missing = await c.call_tool("list_path", {"uri": location + "/nope"})
        assert missing.is_error and "E_NOT_FOUND" in missing.content[0].text
