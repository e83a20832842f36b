"""An agent drives real Kubernetes Jobs through MCP (dev cluster: scripts/dev/k8s up).

The cluster is a real v1.20.2 control plane plus a real kubelet running pods as Docker containers; the node
advertises a fake nvidia.com/gpu capacity (TAO_K8S_FAKE_GPUS).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
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
from tests.helpers import (
    REPO,
    Transcript,
    assert_no_canary,
    call,
    call_error,
    dev_settings,
    launch_request,
    structured,
    wait_done,
    wait_status,
)
from tests.helpers import mcp_client as client
from tests.s3_round_trip import s3_round_trip, with_s3


async def cancel_confirmed(c: Any, job_id: str, budget_s: float = 120) -> dict[str, Any]:
    """cancel_job, then (if the Foreground deletion outlasted the call and it said Canceling) job_status until the
    backend confirms: the documented contract, and a loaded 2-core machine can take longer than one call."""
    result = await call(c, "cancel_job", job_id=job_id)
    if result["status"] == "Canceling":
        result = await wait_status(c, job_id, lambda s: s["status"] != "Canceling", budget_s)
    return result


pytestmark = [pytest.mark.anyio, pytest.mark.k8s]

START = "scripts/dev/k8s up"
MISSING_IMAGE = "127.0.0.1:1/tao-mcp-no-such-image:v1"


@pytest.fixture
def k8s_env(base_env: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    env = {**base_env, **dev_settings("k8s", START), **canaries}
    probe = subprocess.run(kubectl(env, "get", "--raw", "/readyz"), capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"the dev Kubernetes API server does not answer ({probe.stderr.strip()[:200]}): run `{START}`")
    return env


def kubectl(env: dict[str, str], *args: str) -> list[str]:
    return ["kubectl", f"--kubeconfig={env['KUBECONFIG']}", "--request-timeout=10s", *args]


def kubectl_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(kubectl(env, *args, "-o", "json"), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def job_args(env: dict[str, str], command: str, **extra: Any) -> dict[str, Any]:
    options = {"image_pull_policy": "IfNotPresent", **extra.pop("options", {})}
    args = {"platform": "kubernetes", "image": env["TAO_MCP_TEST_IMAGE"], "gpu_count": 0, "command": command}
    return {**args, "options": options, **extra}


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_submit_wait_complete_logs(k8s_env: dict[str, str], mode: str) -> None:
    async with client(k8s_env, mode) as c:
        sub = await call(
            c, "submit_job", **job_args(k8s_env, "echo hello-from-k8s; sleep 3; echo done-$TAO_JOB_ID", gpu_count=1)
        )
        assert sub["status"] == "Pending" and sub["backend_id"] == f"default/tao-{sub['job_id']}"
        calls: list[list[tuple[float, str | None]]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            calls[-1].append((progress, message))

        with anyio.fail_after(120):
            while True:
                calls.append([])
                r = await c.call_tool(
                    "wait_for_job", {"job_id": sub["job_id"], "timeout_s": 30}, progress_callback=on_progress
                )
                done = structured(r)
                if done["done"]:
                    break
        assert done["status"] == "Complete" and done["exit_code"] == 0, done
        seen = [item for call_seen in calls for item in call_seen]
        assert seen, "no progress notification was sent"
        for call_seen in calls:  # progress rises within each wait_for_job call
            assert all(b > a for a, b in itertools.pairwise([p for p, _ in call_seen])), call_seen
        assert any(m and (m.startswith("PENDING") or m.startswith("RUNNING")) for _, m in seen), seen

        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert logs["lines"] == ["hello-from-k8s", f"done-{sub['job_id']}"] and logs["truncated"] is False
        grep = await call(c, "job_logs", job_id=sub["job_id"], grep="hello")
        assert len(grep["lines"]) == 1 and "hello-from-k8s" in grep["lines"][0]
        tail = await call(c, "job_logs", job_id=sub["job_id"], tail=1)
        assert tail["lines"] == [f"done-{sub['job_id']}"] and tail["truncated"] is True

        job = kubectl_json(k8s_env, "get", "job", f"tao-{sub['job_id']}")
        pod_spec = job["spec"]["template"]["spec"]
        assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod_spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
        assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tao-mcp"

    driver = KubernetesDriver(k8s_env)
    ref = JobRef(sub["job_id"], f"tao-{sub['job_id']}", sub["backend_id"], {"namespace": "default"}, 0.0)
    rows = await driver.replicas(ref)
    await driver.aclose()
    assert len(rows) == 1 and rows[0]["phase"] == "Succeeded" and rows[0]["node"] and rows[0]["exit_code"] == 0
    assert rows[0]["readiness_issue"] is None


async def test_nonzero_exit_is_an_error_with_the_code(k8s_env: dict[str, str]) -> None:
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, "echo about-to-fail; exit 3"))
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["exit_code"] == 3, done
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["status"] == "Error"
        assert any("exit code 3" in e["text"] for e in analysis["evidence"]), analysis
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert "about-to-fail" in logs["lines"]


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
        canceled = await cancel_confirmed(c, sub["job_id"])
        assert canceled["status"] == "Canceled", canceled


async def test_unschedulable_gpu_request_is_pending_with_the_reason(k8s_env: dict[str, str]) -> None:
    too_many = int(k8s_env.get("TAO_K8S_FAKE_GPUS", "2")) + 1
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, "echo never", gpu_count=too_many))
        status = await wait_status(c, sub["job_id"], lambda s: "nvidia.com/gpu" in (s["pending_reason"] or ""))
        assert status["status"] == "Pending" and "Insufficient nvidia.com/gpu" in status["pending_reason"], status
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "unschedulable", analysis
        canceled = await cancel_confirmed(c, sub["job_id"])
        assert canceled["status"] == "Canceled", canceled


async def test_cancel_running_job_deletes_it(k8s_env: dict[str, str]) -> None:
    command = "trap 'echo got-term; exit 143' TERM; echo started; while true; do sleep 1; done"
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, command))
        running = await wait_done(c, sub["job_id"], until="running")
        assert running["status"] == "Running", running
        canceled = await cancel_confirmed(c, sub["job_id"])
        assert canceled["status"] == "Canceled", canceled
        again = await call(c, "cancel_job", job_id=sub["job_id"])
        assert again["status"] == "Canceled"
    name = f"tao-{sub['job_id']}"
    gone = subprocess.run(kubectl(k8s_env, "get", "job", name), capture_output=True, text=True)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    pods = kubectl_json(k8s_env, "get", "pods", "-l", f"tao-mcp/job-id={sub['job_id']}")
    assert pods["items"] == []


async def test_restart_reattaches(k8s_env: dict[str, str]) -> None:
    async with client(k8s_env) as c:
        sub = await call(c, "submit_job", **job_args(k8s_env, "sleep 5; echo survived-restart"))
    async with client(k8s_env, "modern") as c:  # a new server process on the same job store
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete", done
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert "survived-restart" in logs["lines"]


async def test_idempotent_submit_launches_once(k8s_env: dict[str, str]) -> None:
    async with client(k8s_env) as c:
        args = job_args(k8s_env, "echo once", idempotency_key=f"k8s-{os.urandom(4).hex()}")
        first = await call(c, "submit_job", **args)
        second = await call(c, "submit_job", **args)
        assert second["reused"] is True and second["job_id"] == first["job_id"]
        jobs = kubectl_json(k8s_env, "get", "jobs", "-l", f"tao-mcp/job-id={first['job_id']}")
        assert len(jobs["items"]) == 1
        await wait_done(c, first["job_id"])


async def test_canary_secrets_stay_in_the_secret(k8s_env: dict[str, str], canaries: dict[str, str]) -> None:
    seen = Transcript()
    async with client(k8s_env) as c:

        async def keep(tool: str, **args: Any) -> dict[str, Any]:
            return seen.keep(await c.call_tool(tool, args))

        args = job_args(k8s_env, "echo NGC=$NGC_KEY; env | sort", secret_env=["NGC_KEY", "HF_TOKEN"])
        preview = await keep("submit_job", **args, dry_run=True)
        assert "secretKeyRef" in json.dumps(preview["preview"])
        sub = await keep("submit_job", **args)
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete", done
        logs = await keep("job_logs", job_id=sub["job_id"], tail=500)
        assert "NGC=[REDACTED]" in logs["lines"]  # the job got the value; the server masked it
        assert any(line.startswith("HF_TOKEN=") for line in logs["lines"])
        await keep("job_status", job_id=sub["job_id"])
        await keep("failure_analysis", job_id=sub["job_id"])
        await keep("list_jobs")
    seen.assert_clean(canaries)
    name = f"tao-{sub['job_id']}"
    job = kubectl_json(k8s_env, "get", "job", name)
    assert_no_canary(json.dumps(job), canaries)  # the Job spec as the API server stores it
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NGC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "NGC_KEY"}
    secret = kubectl_json(k8s_env, "get", "secret", name)
    owners = secret["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [("Job", name, job["metadata"]["uid"])]
    db = sqlite3.connect(Path(k8s_env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    assert_no_canary(json.dumps(db.execute("SELECT * FROM jobs").fetchall()), canaries)


async def test_s3_inputs_and_outputs_with_host_network(k8s_env: dict[str, str]) -> None:
    # RGW listens on the node's 127.0.0.1: the pod needs the node's network, which the job policy allows only
    # with TAO_MCP_ALLOW_HOST_ACCESS=1.
    env = {**with_s3(k8s_env), "TAO_MCP_ALLOW_HOST_ACCESS": "1"}
    image = env["TAO_MCP_TEST_PY_IMAGE"]
    options = {"image_pull_policy": "IfNotPresent", "host_network": True}
    async with client(env) as c:
        preview = await s3_round_trip(c, env, {"platform": "kubernetes", "image": image, "options": options})
    job = yaml.safe_load(preview["preview"]["job.yaml"])
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
