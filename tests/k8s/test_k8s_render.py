"""Kubernetes manifests, options and state mapping: pure, no cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tao_mcp.drivers.base import JobRef, LaunchRequest
from tao_mcp.drivers.k8s import manifest, status
from tao_mcp.drivers.k8s.driver import KubernetesDriver
from tao_mcp.drivers.k8s.options import KubernetesOptions, KubernetesSettings
from tao_mcp.errors import BackendRejected, TaoError
from tao_mcp.service.failures import analyze

pytestmark = [pytest.mark.anyio]

SECRET = "canary-render-secret-value"


def request(num_nodes: int = 1, gpus: int = 2, **options: Any) -> LaunchRequest:
    opts = KubernetesOptions.parse(options, KubernetesSettings())
    return LaunchRequest(
        job_id="abc123def456",
        backend_name="tao-abc123def456",
        command="echo hello && python train.py",
        image="nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        gpu_count=gpus,
        num_nodes=num_nodes,
        env={"TAO_JOB_ID": "abc123def456", "FOO": "bar"},
        secret_env={"NGC_KEY": SECRET},
        time_limit_minutes=90,
        options=opts,
    )


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_import_does_not_load_the_client() -> None:
    code = (
        "import sys, tao_mcp.drivers.k8s; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'urllib3', 'docker', 'boto3', 'paramiko', 'requests')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_job_manifest_single_node() -> None:
    req = request(
        node_selector={"nvidia.com/gpu.product": "A100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        image_pull_secrets=["ngc-pull"],
        volumes=[{"pvc": "results-claim", "mount_path": "/results"}],
        mounts=["/data:/data:ro"],
        memory="16G",
        cpus=8,
        shm_size="8G",
    )
    job = manifest.render_job(req)
    assert SECRET not in json.dumps(job)
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "tao-abc123def456" and meta["namespace"] == "default"
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "tao-mcp", "tao-mcp/job-id": "abc123def456"}
    assert spec["template"]["metadata"]["labels"] == meta["labels"]
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == manifest.DEFAULT_TTL_S
    assert spec["activeDeadlineSeconds"] == 90 * 60
    assert "completionMode" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["imagePullSecrets"] == [{"name": "ngc-pull"}]
    container = pod["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"] and container["command"][-1] == req.command
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "16Gi", "cpu": "8"}
    env = env_of(job)
    assert env["FOO"] == {"name": "FOO", "value": "bar"}
    assert env["NGC_KEY"] == {
        "name": "NGC_KEY",
        "valueFrom": {"secretKeyRef": {"name": "tao-abc123def456", "key": "NGC_KEY"}},
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/results", "/data", "/dev/shm"} and mounts["/data"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["vol-0"]["persistentVolumeClaim"]["claimName"] == "results-claim"
    assert volumes["vol-1"]["hostPath"]["path"] == "/data"
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert manifest.results_root(req.options) == "/results"
    assert manifest.results_root(request().options) is None


def test_cpu_job_has_no_gpu_limit() -> None:
    job = manifest.render_job(request(gpus=0))
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"] == {}


async def test_secret_manifest_and_preview_carry_names_only() -> None:
    req = request()
    secret = manifest.render_secret(req, req.secret_env)
    assert secret["stringData"] == {"NGC_KEY": SECRET} and secret["metadata"]["name"] == "tao-abc123def456"
    assert SECRET not in json.dumps(manifest.render_secret(req))
    driver = KubernetesDriver({"KUBECONFIG": "/nonexistent"})
    preview = await driver.preview(req)
    text = json.dumps(preview.files) + preview.submit
    assert SECRET not in text and "NGC_KEY" in text and "secretKeyRef" in preview.files["job.yaml"]


def test_multi_node_manifest_is_an_indexed_job_with_a_headless_service() -> None:
    req = request(num_nodes=3)
    job = manifest.render_job(req)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 3 and spec["parallelism"] == 3
    assert spec["template"]["spec"]["subdomain"] == "tao-abc123def456"
    env = env_of(job)
    assert env["MASTER_ADDR"]["value"] == "tao-abc123def456-0.tao-abc123def456"
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == manifest.COMPLETION_INDEX
    assert env["WORLD_SIZE"]["value"] == "3"
    service = manifest.render_service(req)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"tao-mcp/job-id": "abc123def456"}
    assert manifest.owner_reference("tao-x", "uid-1")["kind"] == "Job"


@pytest.mark.parametrize(
    ("major", "minor", "ok"), [("1", "20", False), ("1", "21", True), ("1", "21+", True), ("1", "30", True)]
)
def test_multi_node_version_gate(major: str, minor: str, ok: bool) -> None:
    assert manifest.multi_node_supported(major, minor) is ok


async def test_multi_node_refused_below_1_21() -> None:
    driver = KubernetesDriver({"KUBECONFIG": "/nonexistent"})
    driver._version = ("1", "20", "v1.20.2")
    with pytest.raises(BackendRejected, match=r"multi-node needs Kubernetes ≥ 1\.21.*v1\.20\.2"):
        await driver.launch(request(num_nodes=2))


@pytest.mark.parametrize(
    "options",
    [
        {"bogus": 1},
        {"namespace": "Not_A_Name"},
        {"memory": "lots"},
        {"cpus": -1},
        {"tolerations": [{"key": "a", "operator": "Sometimes"}]},
        {"volumes": [{"mount_path": "/x"}]},
        {"volumes": [{"pvc": "a", "host_path": "/b", "mount_path": "/x"}]},
        {"mounts": ["nonsense"]},
        {"image_pull_policy": "Sometimes"},
        {"ttl_seconds_after_finished": -5},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(TaoError) as info:
        KubernetesOptions.parse(options, KubernetesSettings())
    assert info.value.code == "E_BAD_INPUT"


def test_namespace_default_and_override() -> None:
    assert KubernetesOptions.parse({}, KubernetesSettings(namespace="team-a"))["namespace"] == "team-a"
    assert (
        KubernetesOptions.parse({"namespace": "team-b"}, KubernetesSettings(namespace="team-a"))["namespace"]
        == "team-b"
    )


# --- state mapping -------------------------------------------------------------------------------------------------


def job_obj(**status_fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "tao-abc", "labels": {"tao-mcp/job-id": "abc"}},
        "spec": {"backoffLimit": 0, "completions": 1},
        "status": status_fields,
    }


def pod_obj(phase: str, **status_fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "tao-abc-xyz"}, "spec": {}, "status": {"phase": phase, **status_fields}}


def waiting(reason: str, message: str, image: str = "127.0.0.1:1/missing:v1") -> dict[str, Any]:
    return {"name": "job", "image": image, "ready": False, "state": {"waiting": {"reason": reason, "message": message}}}


def test_image_pull_backoff_is_pending_and_explained() -> None:
    pod = pod_obj("Pending", containerStatuses=[waiting("ImagePullBackOff", 'Back-off pulling image "x"')])
    obs = status.observe(job_obj(active=1), [pod])
    assert obs.status == "Pending" and obs.raw_state == "ImagePullBackOff"
    assert obs.pending_reason and "ImagePullBackOff" in obs.pending_reason
    result = analyze(
        platform="kubernetes",
        status=obs.status,
        raw_state=obs.raw_state,
        exit_code=None,
        pending_reason=obs.pending_reason,
        message=obs.message,
        log_lines=[],
    )
    assert result.category == "image_pull", result
    assert "NGC_KEY" in result.suggestion
    rows = status.replicas([pod])
    assert rows[0]["readiness_issue"]["reason"] == "ImagePullBackOff"
    assert "127.0.0.1:1/missing:v1" in rows[0]["readiness_issue"]["message"]


def test_unschedulable_is_pending_with_the_scheduler_message() -> None:
    message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    pod = pod_obj(
        "Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
    )
    obs = status.observe(job_obj(active=1), [pod])
    assert obs.status == "Pending" and obs.pending_reason == f"Unschedulable: {message}"


def test_oom_killed_is_an_error_with_exit_137() -> None:
    term = {"exitCode": 137, "reason": "OOMKilled"}
    pod = pod_obj("Failed", containerStatuses=[{"name": "job", "state": {"terminated": term}}])
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached..."}
    obs = status.observe(job_obj(failed=1, conditions=[failed]), [pod])
    assert (obs.status, obs.raw_state, obs.exit_code) == ("Error", "OOMKilled", 137)
    ev = status.evidence(job_obj(failed=1, conditions=[failed]), [pod], [])
    assert any("OOMKilled" in e.text and "137" in e.text for e in ev)


def test_complete_running_and_missing() -> None:
    done = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}
    obs = status.observe(job_obj(succeeded=1, conditions=[done], startTime="2026-01-01T00:00:00Z"), [])
    assert (obs.status, obs.exit_code) == ("Complete", 0) and obs.ended_at and obs.started_at
    running = pod_obj("Running", containerStatuses=[{"name": "job", "ready": True, "state": {"running": {}}}])
    assert status.observe(job_obj(active=1), [running]).status == "Running"
    assert status.observe(job_obj(), []).status == "Pending"
    assert status.not_found(False).status == "Unknown" and "not found" in status.not_found(False).message
    assert status.not_found(True).status == "Canceled"
    deleting = job_obj(active=1)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert status.observe(deleting, [running]).status == "Canceling"


def test_namespace_comes_from_the_backend_id() -> None:
    driver = KubernetesDriver({"KUBECONFIG": "/nonexistent", "TAO_K8S_NAMESPACE": "team-a"})
    assert driver._namespace(JobRef("a", "tao-a", "team-b/tao-a", {"namespace": "team-c"}, 0.0)) == "team-b"
    assert driver._namespace(JobRef("a", "tao-a", None, {"namespace": "team-c"}, 0.0)) == "team-c"
    assert driver._namespace(JobRef("a", "tao-a", None, {}, 0.0)) == "team-a"
