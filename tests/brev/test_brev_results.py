"""Where Brev results go: the S3 bucket when S3 is configured (as on every other platform), else the instance disk,
which dies with the instance, and submit_job says so in its result. Fake brev CLI + the dev S3 server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.brev.brevkit import client, submit, wait_done
from tests.helpers import dev_settings
from tests.s3.conftest import START, delete_prefix, make_client

pytestmark = [pytest.mark.anyio]

WRITES = "echo hello > {results_dir}/hello.txt"


@pytest.fixture
def s3_settings() -> dict[str, str]:
    return dev_settings("s3", START)


async def test_results_go_to_s3_when_configured(brev_env: dict[str, str], s3_settings: dict[str, str]) -> None:
    env = {**brev_env, **s3_settings}
    bucket = s3_settings["S3_BUCKET_NAME"]
    s3: Any = make_client(s3_settings)
    async with client(env) as c:
        sub = await submit(c, WRITES)
        job_id = sub["job_id"]
        try:
            assert sub["results_location"] == f"s3://{bucket}/results/{job_id}", sub
            assert sub["warnings"] == []
            done = await wait_done(c, job_id)
            assert done["status"] == "Complete", done
            body = s3.get_object(Bucket=bucket, Key=f"results/{job_id}/hello.txt")["Body"].read()
            assert body == b"hello\n"
            # an explicit results_dir keeps them on the instance, and says what that means
            kept = await submit(c, WRITES, results_dir="/home/ubuntu/keep")
            assert kept["results_location"] == f"file:///home/ubuntu/keep/{kept['job_id']}"
            (warning,) = kept["warnings"]
            assert "lost when the instance is deleted" in warning and "gpu-box" in warning
        finally:
            delete_prefix(s3, bucket, f"results/{job_id}/")


async def test_submit_warns_when_results_stay_on_the_instance(brev_env: dict[str, str]) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, WRITES)
        root = brev_env["BREV_RESULTS_DIR"]
        assert sub["results_location"] == f"file://{root}/{sub['job_id']}"
        (warning,) = sub["warnings"]
        assert "lost when the instance is deleted" in warning and "S3_BUCKET_NAME" in warning
        result = await c.call_tool(
            "submit_job",
            {
                "platform": "brev",
                "command": WRITES,
                "image": "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
                "options": {"instance": "gpu-box"},
            },
        )
        assert "WARNING: results stay on the disk of Brev instance gpu-box" in result.content[0].text
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete", done
