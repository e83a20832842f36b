"""An agent drives real Kubernetes Jobs through MCP (dev cluster: scripts/dev/k8s up).

The cluster is a real v1.20.2 control plane plus a real kubelet running pods as Docker containers; the node
advertises a fake nvidia.com/gpu capacity (TAO_K8S_FAKE_GPUS).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from tao_mcp.config import load_settings
from tao_mcp.drivers.base import JobRef
from tao_mcp.drivers.k8s import KubernetesDriver
from tao_mcp.service.store import JobRecord, JobStore
from tests.backends import kubectl_json
from tests.helpers import (
    REPO,
    call,
    call_error,
    launch_request,
    plan_files,
    wait_done,
    wait_status,
)
from tests.helpers import mcp_client as client
from tests.s3_round_trip import s3_round_trip, with_s3
from tests.scenarios.platforms import confirmed_cancel

pytestmark = [pytest.mark.anyio, pytest.mark.k8s]

MISSING_IMAGE = "127.0.0.1:1/tao-mcp-no-such-image:v1"


def job_args(env: dict[str, str], command: str, **extra: Any) -> dict[str, Any]:
    options = {"image_pull_policy": "IfNotPresent", **extra.pop("options", {})}
    args = {"platform": "kubernetes", "image": env["TAO_MCP_TEST_IMAGE"], "gpu_count": 0, "command": command}
    return {**args, "options": options, **extra}


async def test_memory_limit_exceeded_is_host_oom(k8s_env: dict[str, str]) -> None:
    # busybox sh keeps a command substitution's whole output in memory: 256 MB against a 32 MiB limit
    command = "echo allocating; x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived ${#x}"
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, command, options={"memory": "32Mi"}))
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error", done
        assert done["raw_state"] == "OOMKilled" or done["exit_code"] == 137, done
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "host_oom", analysis


async def test_missing_image_is_explained(k8s_env: dict[str, str]) -> None:
    async with client(k8s_env) as c:
        args = job_args(k8s_env, "echo never", image=MISSING_IMAGE)
        sub = await call(c, "submit_job", **args)
        status = await wait_status(
            c,
            sub["job_id"],
            lambda s: s["status"] == "Error" or "ImagePull" in (s["pending_reason"] or "") + s["raw_state"],
        )
        assert status["status"] in ("Pending", "Error"), status
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "image_pull", analysis
        text = json.dumps(analysis)
        assert MISSING_IMAGE in text and "NGC_KEY" in analysis["suggestion"], analysis
        driver = KubernetesDriver(k8s_env)
        ref = JobRef(sub["job_id"], f"tao-{sub['job_id']}", sub["backend_id"], {"namespace": "default"}, 0.0)
        rows = await driver.replicas(ref)
        await driver.aclose()
        assert len(rows) == 1 and rows[0]["phase"] == "Pending" and rows[0]["node"], rows
        issue = rows[0]["readiness_issue"]
        assert issue["reason"] in ("ImagePullBackOff", "ErrImagePull") and MISSING_IMAGE in issue["message"], rows
        canceled = await confirmed_cancel(c, sub["job_id"])
        assert canceled["status"] == "Canceled", canceled


async def test_unschedulable_gpu_request_is_pending_with_the_reason(k8s_env: dict[str, str]) -> None:
    too_many = int(k8s_env.get("TAO_K8S_FAKE_GPUS", "2")) + 1
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, "echo never", gpu_count=too_many))
        status = await wait_status(c, sub["job_id"], lambda s: "nvidia.com/gpu" in (s["pending_reason"] or ""))
        assert status["status"] == "Pending" and "Insufficient nvidia.com/gpu" in status["pending_reason"], status
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "unschedulable", analysis
        canceled = await confirmed_cancel(c, sub["job_id"])
        assert canceled["status"] == "Canceled", canceled


async def test_s3_inputs_and_outputs_with_host_network(k8s_env: dict[str, str]) -> None:
    # RGW listens on the node's 127.0.0.1: the pod needs the node's network, which the job policy allows only
    # with TAO_MCP_ALLOW_HOST_ACCESS=1.
    env = {**with_s3(k8s_env), "TAO_MCP_ALLOW_HOST_ACCESS": "1"}
    image = env["TAO_MCP_TEST_PY_IMAGE"]
    options = {"image_pull_policy": "IfNotPresent", "host_network": True}
    async with client(env) as c:
        preview = await s3_round_trip(c, env, {"platform": "kubernetes", "image": image, "options": options})
        job = yaml.safe_load((await plan_files(c, preview))["job.yaml"])
    assert job["spec"]["template"]["spec"]["hostNetwork"] is True


async def test_job_policy_refuses_host_access_before_the_api(k8s_env: dict[str, str]) -> None:
    """Real submits (no dry run): refused before anything is created in the cluster."""
    attempts = [
        {"volumes": [{"host_path": "/", "mount_path": "/host"}]},
        {"host_network": True},
        {"service_account": "default"},
        {"volumes": [{"secret": "other-team", "mount_path": "/s"}]},
    ]
    async with client(k8s_env) as c:
        for options in attempts:
            text = await call_error(c, "submit_job", **job_args(k8s_env, "true", options=options))
            assert text.startswith("E_POLICY: ") and "TAO_MCP_ALLOW_HOST_ACCESS=1" in text, text
        text = await call_error(c, "submit_job", **job_args(k8s_env, "true"), secret_env=["KUBECONFIG"])
        assert text.startswith("E_POLICY: ") and "control-plane" in text
        assert (await call(c, "list_jobs"))["jobs"] == []  # no record: nothing was launched


async def test_multi_node_is_refused_below_1_21(k8s_env: dict[str, str]) -> None:
    async with client(k8s_env) as c:
        result = await c.call_tool("submit_job", job_args(k8s_env, "echo x", num_nodes=2))
        assert result.is_error and "multi-node needs Kubernetes ≥ 1.21" in result.content[0].text


async def test_interrupted_launch_is_reconciled_by_name(k8s_env: dict[str, str]) -> None:
    settings = load_settings(k8s_env)
    store = JobStore(Path(settings["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    driver = KubernetesDriver(settings)
    options = driver.parse_options({"image_pull_policy": "IfNotPresent"})
    request = launch_request(command="echo reconciled", image=k8s_env["TAO_MCP_TEST_IMAGE"], options=options)
    store.insert(JobRecord.launching(request, platform="kubernetes", digest="x", command=request.command))
    backend_id = await driver.launch(request)  # the process "crashes" before storing the backend id
    await driver.aclose()
    store.close()
    async with client(k8s_env) as c:
        done = await wait_done(c, request.job_id)
        assert done["backend_id"] == backend_id and done["status"] == "Complete", done
    jobs = kubectl_json(k8s_env, "get", "jobs", "-l", f"tao-mcp/job-id={request.job_id}")
    assert len(jobs["items"]) == 1


@pytest.mark.slow
async def test_api_outage_during_wait_is_not_terminal(k8s_env: dict[str, str]) -> None:
    pid_file = Path(k8s_env["TAO_K8S_DEV_RUN_DIR"]) / "kube-apiserver.pid"
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, "echo before; sleep 20; echo after-outage"))
        await wait_done(c, sub["job_id"], until="running")
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # an abrupt outage
        try:
            with anyio.fail_after(60):
                while True:
                    waited = await call(c, "wait_for_job", job_id=sub["job_id"], timeout_s=5)
                    if not waited["backend_reachable"]:
                        break
            assert waited["done"] is False and waited["status"] == "Running", waited
            assert "unreachable" in waited["message"], waited
        finally:
            up = subprocess.run([str(REPO / "scripts/dev/k8s"), "up"], capture_output=True, text=True, timeout=180)
            assert up.returncode == 0, up.stderr[-2000:]
        done = await wait_done(c, sub["job_id"], budget_s=120)
        assert done["status"] == "Complete" and done["backend_reachable"] is True, done
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert "after-outage" in logs["lines"]


async def test_a_job_without_an_image_is_refused_before_it_is_recorded(k8s_env: dict[str, str]) -> None:
    """The dry run and the launch alike refuse it before any record or API call (it was sent, rejected by the API
    server, and left an Error job row behind)."""
    async with client(k8s_env) as c:
        args = {k: v for k, v in job_args(k8s_env, "echo never").items() if k != "image"}
        for dry_run in (True, False):
            text = await call_error(c, "submit_job", **{**args, "dry_run": dry_run})
            assert text.startswith("E_BAD_INPUT: a Kubernetes Job runs a container and no image was given"), text
            assert "Fix:" in text
        assert (await call(c, "list_jobs"))["jobs"] == []
