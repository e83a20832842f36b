"""Dry runs with gpu_count=2, num_nodes=2 on every platform show the multi-GPU environment TAO PyTorch reads
(NUM_GPU_PER_NODE, NUM_NODES/WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT) where each platform provides it;
Docker and Brev, single-host platforms, refuse two nodes with a coded error and show it for one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.helpers import plan_files, structured

pytestmark = pytest.mark.anyio

IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"
SINGLE_HOST = {"docker": "E_NOT_SUPPORTED", "brev": "E_BAD_INPUT"}


async def dry_run(env: dict[str, str], platform: str, **extra: Any) -> tuple[Any, dict[str, str]]:
    """The submit_job result and, when it planned, every file of the plan (its tao://plans resources)."""
    args = {"platform": platform, "command": "python train.py", "image": IMAGE, "gpu_count": 2, "dry_run": True}
    async with Client(build_server(env), mode="legacy") as c:
        result = await c.call_tool("submit_job", {**args, **extra})
        return result, ({} if result.is_error else await plan_files(c, structured(result)))


def k8s_env_vars(preview: dict[str, str]) -> dict[str, Any]:
    import yaml

    manifest = yaml.safe_load(preview["job.yaml"])
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


async def test_slurm_two_nodes_two_gpus(slurm_env: dict[str, str]) -> None:
    _, preview = await dry_run(slurm_env, "slurm", num_nodes=2)
    sbatch = next(v for k, v in preview.items() if k.endswith("job.sbatch"))
    command = next(v for k, v in preview.items() if k.endswith("command.sh"))
    assert "#SBATCH --nodes=2" in sbatch and "#SBATCH --ntasks-per-node=1" in sbatch
    assert "#SBATCH --gres=gpu:2" in sbatch
    for line in ("export NUM_GPU_PER_NODE=2", 'export NUM_NODES="$SLURM_NNODES"', 'export WORLD_SIZE="$SLURM_NNODES"'):
        assert line in sbatch
    assert "export MASTER_ADDR=" in sbatch and "export MASTER_PORT=" in sbatch
    assert 'export NODE_RANK="${SLURM_NODEID:-0}"' in command
    unset = next(line for line in command.splitlines() if line.startswith("unset "))
    assert {"SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "LOCAL_RANK"} <= set(
        unset.split()
    )


async def test_kubernetes_two_nodes_two_gpus(k8s_env: dict[str, str]) -> None:
    env = k8s_env_vars((await dry_run(k8s_env, "kubernetes", num_nodes=2))[1])
    assert env["NUM_GPU_PER_NODE"] == "2" and env["NUM_NODES"] == "2" and env["WORLD_SIZE"] == "2"
    assert env["NODE_RANK"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }
    name = env["MASTER_ADDR"].split(".")[-1]
    assert env["MASTER_ADDR"] == f"{name}-0.{name}" and env["MASTER_PORT"]  # rank 0 by the headless service
    single = k8s_env_vars((await dry_run(k8s_env, "kubernetes"))[1])
    assert (single["NUM_NODES"], single["NODE_RANK"], single["MASTER_ADDR"]) == ("1", "0", "127.0.0.1")


async def test_lepton_two_nodes_two_gpus(lepton_env: dict[str, str]) -> None:
    _, preview = await dry_run(lepton_env, "lepton", num_nodes=2)
    text = "\n".join(preview.values())
    body = next(json.loads(v) for v in preview.values() if '"resource_shape"' in v)
    envs = {e["name"]: e.get("value") for e in body["spec"]["envs"]}
    assert envs["NUM_GPU_PER_NODE"] == "2" and envs["NUM_NODES"] == "2" and envs["WORLD_SIZE"] == "2"
    assert "NODE_RANK=" in text and "LEPTON_JOB_WORKER_INDEX" in text and "MASTER_ADDR=" in text
    assert body["spec"]["completions"] == 2


@pytest.mark.parametrize("platform", ["docker", "brev"])
async def test_single_host_platforms(platform: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue(f"{platform}_env")
    options = {"options": {"gpu_name": "L4"}} if platform == "brev" else {}
    refused, _ = await dry_run(env, platform, num_nodes=2, **options)
    assert refused.is_error and refused.content[0].text.startswith(SINGLE_HOST[platform])
    _, preview = await dry_run(env, platform, **options)
    text = "\n".join(preview.values())
    for pair in ("NUM_GPU_PER_NODE", "NUM_NODES", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert pair in text
    if platform == "docker":
        spec = json.loads(preview["container.json"])
        assert spec["environment"]["NUM_GPU_PER_NODE"] == "2" and spec["environment"]["NUM_NODES"] == "1"
        every = json.loads((await dry_run(env, platform, options={"gpus": "all"}))[1]["container.json"])
        assert "NUM_GPU_PER_NODE" not in every["environment"]  # counted in the container: nvidia-smi -L
        assert every["command"][-1].startswith('export NUM_GPU_PER_NODE="${NUM_GPU_PER_NODE:-$(nvidia-smi -L')
    else:
        job_env = next(v for k, v in preview.items() if k.endswith("job.env"))
        assert "NUM_GPU_PER_NODE=2\n" in job_env and "NODE_RANK=0\n" in job_env
