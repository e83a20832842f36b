"""Lepton job bodies, names and options: what `POST /jobs` is sent, built from a LaunchRequest. Pure.

Secrets never appear as plain `envs` values: each one is a per-job workspace secret (secret_ref_name) that the
container reads through `value_from.secret_name_ref`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from tao_mcp.drivers.base import LaunchRequest
from tao_mcp.errors import TaoError

OPTIONS = (
    "node_group",
    "resource_shape",
    "mounts",
    "persistent_results",
    "image_pull_secrets",
    "ttl_seconds_after_finished",
    "max_job_failure_retry",
    "shared_memory_size",
    "intra_job_communication",
)
OPTIONS_HELP = (
    "accepted Lepton options: node_group (name or id of a dedicated node group; default LEPTON_NODE_GROUP or the "
    "only one), resource_shape (e.g. gpu.1xh100; default: chosen from /shapes for gpu_count), mounts (list of "
    "{path, mount_path, from} or 'volume:path:mount_path'), persistent_results (bool: mount the node group's "
    "NFS/Lustre volume and keep results there), image_pull_secrets (list of names), ttl_seconds_after_finished "
    "(int >= 0), max_job_failure_retry (int >= 0), shared_memory_size (MiB, int >= 0), intra_job_communication "
    "(bool; default true when num_nodes > 1)"
)
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SECRET_NAME = re.compile(r"[^A-Za-z0-9_]")
DEFAULT_TTL_S = 600
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


def parse_options(options: Mapping[str, Any], default_node_group: str | None) -> dict[str, Any]:
    """The submit_job options checked and completed with their defaults (E_BAD_INPUT names the accepted ones)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TaoError("E_BAD_INPUT", f"unknown Lepton option(s): {', '.join(unknown)}", OPTIONS_HELP)

    def text(key: str, default: str | None = None) -> str | None:
        value = options.get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", value):
            raise TaoError("E_BAD_INPUT", f"{key} {value!r} is not a plain Lepton name", OPTIONS_HELP)
        return value

    def integer(key: str, default: int | None) -> int | None:
        value = options.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TaoError("E_BAD_INPUT", f"{key} {value!r} is not an integer >= 0", OPTIONS_HELP)
        return value

    def boolean(key: str) -> bool | None:
        value = options.get(key)
        if value is None:
            return None
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            value = value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise TaoError("E_BAD_INPUT", f"{key} {value!r} is not true or false", OPTIONS_HELP)
        return value

    secrets = options.get("image_pull_secrets") or []
    if isinstance(secrets, str):
        secrets = [s.strip() for s in secrets.split(",") if s.strip()]
    if not isinstance(secrets, list | tuple) or not all(
        isinstance(s, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", s) for s in secrets
    ):
        raise TaoError("E_BAD_INPUT", "image_pull_secrets must be a list of secret names", OPTIONS_HELP)

    return {
        "node_group": text("node_group", default_node_group),
        "resource_shape": text("resource_shape"),
        "mounts": parse_mounts(options.get("mounts")),
        "persistent_results": bool(boolean("persistent_results")),
        "image_pull_secrets": list(secrets),
        "ttl_seconds_after_finished": integer("ttl_seconds_after_finished", DEFAULT_TTL_S),
        "max_job_failure_retry": integer("max_job_failure_retry", None),
        "shared_memory_size": integer("shared_memory_size", None),
        "intra_job_communication": boolean("intra_job_communication"),
    }


def parse_mounts(value: Any) -> list[dict[str, str]]:
    if value is None or value == "":
        return []
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        raise TaoError("E_BAD_INPUT", "mounts must be a list", OPTIONS_HELP)
    out: list[dict[str, str]] = []
    for item in value:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 3:
                volume, path, mount_path = parts
                item = {"from": f"node-nfs:{volume}", "path": path, "mount_path": mount_path}
            elif len(parts) == 4:  # node-nfs:volume:path:mount_path
                item = {"from": f"{parts[0]}:{parts[1]}", "path": parts[2], "mount_path": parts[3]}
            elif len(parts) == 2:
                item = {"path": parts[0], "mount_path": parts[1]}
            else:
                raise TaoError("E_BAD_INPUT", f"mount {item!r} is not volume:path:mount_path", OPTIONS_HELP)
        if not isinstance(item, Mapping) or set(item) - {"path", "mount_path", "from"}:
            raise TaoError("E_BAD_INPUT", f"mount {item!r} has keys other than path, mount_path, from", OPTIONS_HELP)
        path, mount_path = str(item.get("path") or "/"), str(item.get("mount_path") or "")
        for label, p in (("path", path), ("mount_path", mount_path)):
            if not re.fullmatch(r"/[A-Za-z0-9_./-]*", p) or ".." in p.split("/"):
                raise TaoError("E_BAD_INPUT", f"mount {label} {p!r} is not a plain absolute path", OPTIONS_HELP)
        mount = {"path": path, "mount_path": mount_path}
        if item.get("from"):
            source = str(item["from"])
            if not re.fullmatch(r"[a-z-]+:[A-Za-z0-9_.-]+", source):
                raise TaoError("E_BAD_INPUT", f"mount from {source!r} is not like node-nfs:<volume>", OPTIONS_HELP)
            mount["from"] = source
        out.append(mount)
    return out


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
    req: LaunchRequest, shape: str, group: Mapping[str, Any] | None, mounts: list[dict[str, str]]
) -> dict[str, Any]:
    """The `POST /jobs` body: bash -c command, env values and secret references, shape, node group, mounts."""
    opts = req.options
    command = req.command
    if req.num_nodes > 1:
        command = f"{MULTI_NODE_ENV}\n{command}"
    if req.time_limit_minutes:
        command = f"exec timeout -k 60 {req.time_limit_minutes * 60} bash -c {shlex.quote(command)}"
    envs: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in req.env.items()]
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
    if opts.get("image_pull_secrets"):
        spec["image_pull_secrets"] = list(opts["image_pull_secrets"])
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
