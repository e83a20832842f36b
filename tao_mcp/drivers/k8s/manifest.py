"""Kubernetes options and manifests: pure functions, no client library (rendering tests need no cluster).

Manifests are plain dicts in the API's JSON form (camelCase), exactly what is sent to the API server.
Secret values never appear in the Job: the pod reads them with `secretKeyRef` from a Secret named after the job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tao_mcp.drivers.base import LaunchRequest, with_distributed_env
from tao_mcp.drivers.k8s.options import DEFAULT_TTL_S

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tao-mcp"
JOB_ID_LABEL = "tao-mcp/job-id"
SELECTOR = f"{MANAGED_BY}={MANAGER}"
CONTAINER = "job"
GPU_RESOURCE = "nvidia.com/gpu"
MASTER_PORT = 29500
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# bash when the image has it (TAO images do), else sh (busybox-style images have no bash)
SHELL_WRAPPER = 'if command -v bash >/dev/null 2>&1; then exec bash -c "$1"; else exec sh -c "$1"; fi'


def results_root(options: Mapping[str, Any]) -> str | None:
    """/results when a writable volume is mounted there (results persist on it), else None (S3 / container)."""
    for volume in options.get("volumes") or []:
        if volume.get("mount_path") == "/results" and not volume.get("read_only") and "empty_dir" not in volume:
            return "/results"
    return None


def labels(job_id: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, JOB_ID_LABEL: job_id}


def owner_reference(job_name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid, "blockOwnerDeletion": False}


def _volume_specs(volumes: list[dict[str, Any]], shm_size: str | None) -> tuple[list[dict], list[dict]]:
    specs: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for vol in volumes:
        if "pvc" in vol:
            source = {"persistentVolumeClaim": {"claimName": vol["pvc"], "readOnly": vol["read_only"]}}
        elif "host_path" in vol:
            source = {"hostPath": {"path": vol["host_path"]}}
        elif "config_map" in vol:
            source = {"configMap": {"name": vol["config_map"]}}
        elif "secret" in vol:
            source = {"secret": {"secretName": vol["secret"]}}
        else:
            source = {"emptyDir": {}}
        specs.append({"name": vol["name"], **source})
        mount = {"name": vol["name"], "mountPath": vol["mount_path"], "readOnly": vol["read_only"]}
        if vol.get("sub_path"):
            mount["subPath"] = vol["sub_path"]
        mounts.append(mount)
    if shm_size:
        specs.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return specs, mounts


def render_job(req: LaunchRequest, *, secret_name: str | None = None) -> dict[str, Any]:
    """The batch/v1 Job. Multi-node: an Indexed Job (Kubernetes >= 1.21) whose pods find rank 0 by DNS."""
    opts = req.options
    name = req.backend_name
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted(with_distributed_env(req).items())]
    if req.num_nodes > 1:
        env += [
            {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        ]
    for key in sorted(req.secret_env):  # names only: values live in the Secret
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name or name, "key": key}}})

    limits: dict[str, str] = {}
    if req.gpu_count > 0:
        limits[GPU_RESOURCE] = str(req.gpu_count)
    if opts.get("memory"):
        limits["memory"] = opts["memory"]
    if opts.get("cpus"):
        limits["cpu"] = opts["cpus"]
    volumes, mounts = _volume_specs(list(opts.get("volumes") or []), opts.get("shm_size"))
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": req.image,
        "command": ["/bin/sh", "-c", SHELL_WRAPPER, "tao-job", req.command],
        "env": env,
        "resources": {"limits": limits, "requests": dict(limits)} if limits else {},
    }
    if opts.get("image_pull_policy"):
        container["imagePullPolicy"] = opts["image_pull_policy"]
    if mounts:
        container["volumeMounts"] = mounts

    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if opts.get("host_network"):
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"  # keep cluster DNS names resolvable
    if volumes:
        pod_spec["volumes"] = volumes
    if opts.get("node_selector"):
        pod_spec["nodeSelector"] = dict(opts["node_selector"])
    if opts.get("tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in opts["tolerations"]]
    if opts.get("image_pull_secrets"):
        pod_spec["imagePullSecrets"] = [{"name": s} for s in opts["image_pull_secrets"]]
    if opts.get("service_account"):
        pod_spec["serviceAccountName"] = opts["service_account"]

    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": int(opts.get("ttl_seconds_after_finished", DEFAULT_TTL_S)),
        "template": {"metadata": {"labels": labels(req.job_id)}, "spec": pod_spec},
    }
    if req.time_limit_minutes:
        spec["activeDeadlineSeconds"] = int(req.time_limit_minutes) * 60
    if req.num_nodes > 1:
        spec.update({"completionMode": "Indexed", "completions": req.num_nodes, "parallelism": req.num_nodes})
        pod_spec["subdomain"] = name  # the headless Service: <job>-<index>.<job> resolves to each pod
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": opts["namespace"], "labels": labels(req.job_id)},
        "spec": spec,
    }


def render_secret(req: LaunchRequest, values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The per-job Secret. values=None renders names only (previews)."""
    data = {
        k: (values[k] if values is not None else f"<value of {k} from the server environment>")
        for k in values or req.secret_env
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": req.backend_name, "namespace": req.options["namespace"], "labels": labels(req.job_id)},
        "type": "Opaque",
        "stringData": dict(sorted(data.items())),
    }


def render_service(req: LaunchRequest) -> dict[str, Any]:
    """Headless Service giving the Indexed Job's pods stable DNS names (multi-node only)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": req.backend_name, "namespace": req.options["namespace"], "labels": labels(req.job_id)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_ID_LABEL: req.job_id},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT}],
        },
    }


def multi_node_supported(major: str, minor: str) -> bool:
    """Indexed Jobs arrived in 1.21 (minor may read "21+" on managed clusters)."""
    try:
        return (int(re.sub(r"\D", "", major) or 0), int(re.sub(r"\D", "", minor) or 0)) >= (1, 21)
    except ValueError:
        return False
