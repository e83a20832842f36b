"""Data staging end to end on the real SLURM cluster: a job whose spec names an NGC pretrained model and a Hugging
Face file (fakes of both APIs on this host) and an S3 dataset, run twice with `input_cache`: the second job takes
the unchanged object from the cache and downloads the one whose ETag changed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

from fixtures.model_hubs.fake_hf import FakeHF
from fixtures.model_hubs.fake_ngc import FakeNGC
from tao_mcp.server import build_server
from tests.s3_round_trip import s3_client, with_s3
from tests.slurm.test_slurm_mcp import call, wait_done

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


@pytest.fixture
def hubs(canaries: dict[str, str]) -> Iterator[tuple[FakeNGC, FakeHF]]:
    ngc = FakeNGC(api_key=canaries["NGC_KEY"])
    ngc.start()
    ngc.add_model("nvidia/tao/pretrained_dino:resnet50", {"resnet50.pth": b"dino weights"})
    hf = FakeHF(tokens=(canaries["HF_TOKEN"],))
    hf.start()
    hf.add_repo("org/detr", {"config.json": b'{"arch": "detr"}'}, gated=True)
    yield ngc, hf
    ngc.stop()
    hf.stop()


async def run(c: Client, specs: dict[str, Any], cache: str) -> list[str]:
    sub = await call(
        c,
        "submit_job",
        platform="slurm",
        gpu_count=0,
        command="cat {config_path} && cat {results_dir}/inputs/data/ds/*.txt",
        specs=specs,
        inputs={"data": {"type": "folder"}},
        config_format="json",
        options={"input_cache": cache},
    )
    done = await wait_done(c, sub["job_id"])
    logs = await call(c, "job_logs", job_id=sub["job_id"], tail=200)
    assert done["status"] == "Complete", "\n".join(logs["lines"])
    return logs["lines"]


async def test_hub_inputs_and_input_cache_on_slurm(slurm_env: dict[str, str], hubs: tuple[FakeNGC, FakeHF]) -> None:
    ngc, hf = hubs
    env = with_s3(slurm_env) | {"TAO_NGC_AUTH_URL": ngc.url, "TAO_NGC_API_URL": ngc.url, "HF_ENDPOINT": hf.url}
    s3, bucket = s3_client(env), env["S3_BUCKET_NAME"]
    prefix = f"cache-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/ds/a.txt", Body=b"alpha\n")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/ds/b.txt", Body=b"beta\n")
    cache = f"{slurm_env['SLURM_BASE_RESULTS_DIR']}/input-cache-{prefix}"
    specs = {
        "train": {"pretrained_model_path": "ngc://nvidia/tao/pretrained_dino:resnet50"},
        "model": {"config": "hf://org/detr/config.json"},
        "data": f"s3://{bucket}/{prefix}/ds/",
    }
    try:
        async with Client(build_server(env)) as c:
            first = "\n".join(await run(c, specs, cache))
            assert "download ngc://nvidia/tao/pretrained_dino:resnet50 from NGC" in first
            assert "resnet50.pth" in first and "config.json" in first and "alpha" in first
            assert "from the input cache" not in first
            assert len([p for p in Path(cache).rglob("*") if p.is_file()]) == 2
            s3.put_object(Bucket=bucket, Key=f"{prefix}/ds/b.txt", Body=b"beta changed\n")  # a new ETag
            second = await run(c, specs, cache)
            assert any("a.txt (from the input cache)" in line for line in second), second
            assert not any("b.txt (from the input cache)" in line for line in second), second
            assert "beta changed" in "\n".join(second)
        assert len([p for p in Path(cache).rglob("*") if p.is_file()]) == 3
        for secret in (env["NGC_KEY"], env["HF_TOKEN"], env["SECRET_KEY"], *ngc.tokens):
            assert secret not in first + "\n".join(second)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        for key in ("a.txt", "b.txt"):
            s3.delete_object(Bucket=bucket, Key=f"{prefix}/ds/{key}")
