"""Lepton job bodies, names and options: what `POST /jobs` is sent, built from a LaunchRequest. Pure.

Secrets never appear as plain `envs` values: each one is a per-job workspace secret (secret_ref_name) that the
container reads through `value_from.secret_name_ref`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from tao_mcp.drivers.base import LaunchRequest, with_distributed_env

VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SECRET_NAME = re.compile(r"[^A-Za-z0-9_]")
RESULTS_SUBDIR = "tao-mcp"

# Multi-node rendezvous from the variables Lepton sets with intra_job_communication (leptonai's torchrun recipe);
# values the user set win.
MULTI_NODE_ENV = (
    'export MASTER_ADDR="${MASTER_ADDR:-${LEPTON_JOB_SERVICE_PREFIX:-${LEPTON_JOB_NAME}-job-svc}-0.'
    '${LEPTON_SUBDOMAIN:-${LEPTON_JOB_NAME}-job-svc}}" MASTER_PORT="${MASTER_PORT:-29500}" '
    'NODE_RANK="${NODE_RANK:-${LEPTON_JOB_WORKER_INDEX:-0}}" NUM_NODES="${NUM_NODES:-${LEPTON_JOB_TOTAL_WORKERS:-1}}" '
    'WORLD_SIZE="${WORLD_SIZE:-${LEPTON_JOB_TOTAL_WORKERS:-1}}"'
)


def backend_job_name(backend_name: str) -> str:
    """Lepton job names: lowercase, start with a letter, [a-z0-9-], at most 36 chars, not ending in '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", backend_name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"tao-{name}"
    return name[:36].rstrip("-")


def secret_ref_name(job_id: str, env_name: str) -> str:
    """The workspace secret holding one secret of one job (per job, so a rotated value never changes a live job)."""
    return f"TAO_MCP_{SECRET_NAME.sub('_', job_id)}_{env_name}"


def choose_shape(shapes: list[dict[str, Any]], gpu_count: int) -> str | None:
    """The shape with exactly gpu_count accelerators, else the smallest larger one (fewest GPUs, then CPU, memory)."""
    candidates = []
    for shape in shapes:
        spec = shape.get("spec") or {}
        listable = spec.get("listable_in")
        if isinstance(listable, list) and listable and "job" not in listable:
            continue
        num = int(spec.get("accelerator_num") or 0)
        if num >= gpu_count and (gpu_count > 0 or num == 0):
            key = (num, float(spec.get("cpu") or 0), float(spec.get("memory_in_mb") or 0))
            candidates.append((key, (shape.get("metadata") or {}).get("id")))
    candidates = [c for c in candidates if c[1]]
    return min(candidates)[1] if candidates else None


def registry(image: str | None) -> str:
    """The registry host of an image reference ('docker.io' when the first part is not a host)."""
    first, sep, _ = (image or "").partition("/")
    return first.lower() if sep and ("." in first or ":" in first or first == "localhost") else "docker.io"


def under_prefix(path: str, prefix: str | None) -> str:
    """A volume path inside the workspace's storage path prefix: prepended unless the path is already inside."""
    prefix = "/" + (prefix or "").strip("/")
    if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
        return path
    return prefix + ("/" + path.strip("/") if path.strip("/") else "")


def persistent_volume(group: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The node group's first NFS/Lustre volume as a mount at /mnt/<name> (None: the group has none)."""
    for volume in ((group or {}).get("spec") or {}).get("volumes") or []:
        if not isinstance(volume, Mapping):
            continue
        source = str(volume.get("from") or "")
        name = str(volume.get("name") or source.partition(":")[2])
        kind = source.partition(":")[0] if ":" in source else str(volume.get("type") or "")
        if kind in ("node-nfs", "node-lustre", "nfs", "lustre") and VOLUME_NAME.match(name):
            source = source if ":" in source else f"node-nfs:{name}"
            return {"path": "/", "mount_path": f"/mnt/{name}", "from": source}
    return None


def job_body(
    req: LaunchRequest,
    shape: str,
    group: Mapping[str, Any] | None,
    mounts: list[dict[str, str]],
    pull_secrets: list[str] | None = None,
) -> dict[str, Any]:
    """The `POST /jobs` body: bash -c command, env values and secret references, shape, node group, mounts.
    pull_secrets: the image-pull secret names (the options' list, or the nvcr.io secret the driver ensured)."""
    opts = req.options
    command = req.command
    if req.num_nodes > 1:
        command = f"{MULTI_NODE_ENV}\n{command}"
    if req.time_limit_minutes:
        command = f"exec timeout -k 60 {req.time_limit_minutes * 60} bash -c {shlex.quote(command)}"
    envs: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in with_distributed_env(req).items()]
    envs += [
        {"name": name, "value_from": {"secret_name_ref": secret_ref_name(req.job_id, name)}}
        for name in sorted(req.secret_env)
    ]
    spec: dict[str, Any] = {
        "resource_shape": shape,
        "container": {"image": req.image, "command": ["/bin/bash", "-c", command]},
        "completions": req.num_nodes,
        "parallelism": req.num_nodes,
        "envs": envs,
    }
    group_id = ((group or {}).get("metadata") or {}).get("id")
    if group_id:
        spec["affinity"] = {"allowed_dedicated_node_groups": [group_id]}
    if mounts:
        spec["mounts"] = mounts
    pulls = list(opts.get("image_pull_secrets") or []) or list(pull_secrets or [])
    if pulls:
        spec["image_pull_secrets"] = pulls
    intra = opts.get("intra_job_communication")
    if intra is None:
        intra = req.num_nodes > 1
    spec["intra_job_communication"] = bool(intra)
    for key in ("ttl_seconds_after_finished", "max_job_failure_retry", "shared_memory_size"):
        if opts.get(key) is not None:
            spec[key] = opts[key]
    return {
        "metadata": {"id": backend_job_name(req.backend_name), "labels": {"tao-mcp-job-id": req.job_id}},
        "spec": spec,
    }
