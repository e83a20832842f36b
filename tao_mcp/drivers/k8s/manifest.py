"""Kubernetes options and manifests: pure functions, no client library (rendering tests need no cluster).

Manifests are plain dicts in the API's JSON form (camelCase), exactly what is sent to the API server.
Secret values never appear in the Job: the pod reads them with `secretKeyRef` from a Secret named after the job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tao_mcp.drivers.base import LaunchRequest
from tao_mcp.errors import TaoError

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tao-mcp"
JOB_ID_LABEL = "tao-mcp/job-id"
SELECTOR = f"{MANAGED_BY}={MANAGER}"
CONTAINER = "job"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_TTL_S = 7 * 24 * 3600  # finished Jobs stay a week (ttlSecondsAfterFinished; ignored where the gate is off)
MASTER_PORT = 29500
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# bash when the image has it (TAO images do), else sh (busybox-style images have no bash)
SHELL_WRAPPER = 'if command -v bash >/dev/null 2>&1; then exec bash -c "$1"; else exec sh -c "$1"; fi'

OPTIONS = (
    "namespace",
    "node_selector",
    "tolerations",
    "image_pull_secrets",
    "image_pull_policy",
    "volumes",
    "mounts",
    "memory",
    "cpus",
    "shm_size",
    "service_account",
    "ttl_seconds_after_finished",
    "host_network",
)
OPTIONS_HELP = (
    "accepted Kubernetes options: namespace (name), node_selector ({label: value}), tolerations (list of "
    "{key, operator, value, effect, tolerationSeconds}), image_pull_secrets (list of Secret names), "
    "image_pull_policy (Always|IfNotPresent|Never), volumes (list of {mount_path, pvc | host_path | config_map | "
    "secret | empty_dir, read_only, sub_path}; a volume at /results keeps results), mounts (list of "
    "host_src:dst[:ro] or pvc:CLAIM:dst[:ro]), memory (e.g. 16G, 512Mi), cpus (e.g. 8 or 500m), shm_size "
    "(e.g. 8G, a memory-backed /dev/shm), service_account (name), ttl_seconds_after_finished (int >= 0), "
    "host_network (bool: the node's network, e.g. to reach a service on the node's loopback)"
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
SLURM_MEMORY = re.compile(r"^([0-9]+)([KMGT])B?$", re.IGNORECASE)
VOLUME_SOURCES = ("pvc", "host_path", "config_map", "secret", "empty_dir")
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds", "toleration_seconds"}


def _bad(cause: str) -> TaoError:
    return TaoError("E_BAD_INPUT", cause, OPTIONS_HELP)


def _name(value: Any, what: str, pattern: re.Pattern[str] = DNS_SUBDOMAIN) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _bad(f"{what} {value!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
    return value


def _quantity(value: Any, what: str, *, memory: bool) -> str:
    text = str(value).strip()
    if memory:
        match = SLURM_MEMORY.match(text)
        if match:  # SLURM-style 16G / 16GB means GiB, as in the SLURM option
            return f"{match.group(1)}{match.group(2).upper()}i"
    if isinstance(value, bool) or not QUANTITY.match(text) or float(re.sub(r"[A-Za-z]+$", "", text)) <= 0:
        raise _bad(f"{what} {value!r} is not a positive Kubernetes quantity")
    return text


def _volume(item: Any, index: int) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise _bad(f"volumes[{index}] is not an object")
    unknown = sorted(set(item) - {"name", "mount_path", "read_only", "sub_path", *VOLUME_SOURCES})
    if unknown:
        raise _bad(f"volumes[{index}] has unknown keys {', '.join(unknown)}")
    sources = [key for key in VOLUME_SOURCES if item.get(key) not in (None, False, "")]
    if len(sources) != 1:
        raise _bad(f"volumes[{index}] needs exactly one of {', '.join(VOLUME_SOURCES)}")
    mount_path = item.get("mount_path")
    if not isinstance(mount_path, str) or not mount_path.startswith("/") or ":" in mount_path:
        raise _bad(f"volumes[{index}].mount_path {mount_path!r} is not an absolute path")
    kind = sources[0]
    source = item[kind]
    if kind == "empty_dir":
        source = True
    elif kind == "host_path":
        if not isinstance(source, str) or not source.startswith("/"):
            raise _bad(f"volumes[{index}].host_path {source!r} is not an absolute path")
    else:
        source = _name(source, f"volumes[{index}].{kind}")
    volume = {"name": f"vol-{index}", "mount_path": mount_path.rstrip("/") or "/", kind: source}
    volume["read_only"] = bool(item.get("read_only", False))
    if item.get("sub_path"):
        sub_path = item["sub_path"]
        if not isinstance(sub_path, str) or sub_path.startswith("/") or ".." in sub_path.split("/"):
            raise _bad(f"volumes[{index}].sub_path {sub_path!r} must be a relative path without '..'")
        volume["sub_path"] = sub_path
    return volume


def _mount(text: Any, index: int) -> dict[str, Any]:
    """host_src:dst[:ro] or pvc:CLAIM:dst[:ro] (the SLURM `mounts` form)."""
    if not isinstance(text, str):
        raise _bad(f"mounts[{index}] {text!r} is not a string")
    parts = text.strip().split(":")
    read_only = parts[-1] in ("ro", "rw") and parts.pop() == "ro"
    if len(parts) == 3 and parts[0] == "pvc":
        return {"pvc": parts[1], "mount_path": parts[2], "read_only": read_only}
    if len(parts) == 2:
        return {"host_path": parts[0], "mount_path": parts[1], "read_only": read_only}
    raise _bad(f"mounts[{index}] {text!r} is not host_src:dst[:ro] or pvc:CLAIM:dst[:ro]")


def parse_options(options: Mapping[str, Any], default_namespace: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise _bad(f"unknown Kubernetes option(s): {', '.join(unknown)}")
    get = lambda key: None if options.get(key) in (None, "", [], {}) else options.get(key)  # noqa: E731

    namespace = _name(get("namespace") or default_namespace, "namespace", DNS_LABEL)

    node_selector = get("node_selector") or {}
    if not isinstance(node_selector, Mapping) or not all(
        isinstance(k, str) and LABEL_KEY.match(k) and isinstance(v, str) and LABEL_VALUE.match(v)
        for k, v in node_selector.items()
    ):
        raise _bad("node_selector must map label keys to label values, e.g. {'nvidia.com/gpu.product': 'A100'}")

    tolerations = []
    for i, tol in enumerate(get("tolerations") or []):
        if not isinstance(tol, Mapping) or not set(tol) <= TOLERATION_KEYS:
            raise _bad(f"tolerations[{i}] must be an object with key, operator, value, effect, tolerationSeconds")
        item = {k: v for k, v in tol.items() if k != "toleration_seconds"}
        if "toleration_seconds" in tol:
            item["tolerationSeconds"] = tol["toleration_seconds"]
        if item.get("operator", "Equal") not in ("Equal", "Exists"):
            raise _bad(f"tolerations[{i}].operator must be Equal or Exists")
        if item.get("effect") not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise _bad(f"tolerations[{i}].effect must be NoSchedule, PreferNoSchedule or NoExecute")
        if "tolerationSeconds" in item and (
            isinstance(item["tolerationSeconds"], bool) or not isinstance(item["tolerationSeconds"], int)
        ):
            raise _bad(f"tolerations[{i}].tolerationSeconds must be an integer")
        for key in ("key", "value"):
            if key in item and not isinstance(item[key], str):
                raise _bad(f"tolerations[{i}].{key} must be a string")
        tolerations.append(item)

    pull_secrets = get("image_pull_secrets") or []
    if isinstance(pull_secrets, str):
        pull_secrets = [s.strip() for s in pull_secrets.split(",") if s.strip()]
    if not isinstance(pull_secrets, list | tuple):
        raise _bad("image_pull_secrets must be a list of Secret names")
    pull_secrets = [_name(s, "image_pull_secrets entry") for s in pull_secrets]

    pull_policy = get("image_pull_policy")
    if pull_policy is not None and pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise _bad(f"image_pull_policy {pull_policy!r} is not Always, IfNotPresent or Never")

    volumes_in = get("volumes") or []
    if not isinstance(volumes_in, list | tuple):
        raise _bad("volumes must be a list of objects")
    mounts_in = get("mounts") or []
    if isinstance(mounts_in, str):
        mounts_in = [m for m in mounts_in.split(",") if m.strip()]
    if not isinstance(mounts_in, list | tuple):
        raise _bad("mounts must be a list of host_src:dst[:ro] or pvc:CLAIM:dst[:ro]")
    raw_volumes = [*volumes_in, *(_mount(m, i) for i, m in enumerate(mounts_in))]
    volumes = [_volume(v, i) for i, v in enumerate(raw_volumes)]
    paths = [v["mount_path"] for v in volumes]
    if len(set(paths)) != len(paths):
        raise _bad("two volumes are mounted at the same path")

    memory = _quantity(get("memory"), "memory", memory=True) if get("memory") is not None else None
    cpus = _quantity(get("cpus"), "cpus", memory=False) if get("cpus") is not None else None
    shm_size = _quantity(get("shm_size"), "shm_size", memory=True) if get("shm_size") is not None else None
    service_account = _name(get("service_account"), "service_account") if get("service_account") else None

    ttl = options.get("ttl_seconds_after_finished", DEFAULT_TTL_S)
    if isinstance(ttl, str) and ttl.strip().isdigit():
        ttl = int(ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise _bad(f"ttl_seconds_after_finished {ttl!r} is not an integer >= 0")

    host_network = options.get("host_network", False)
    if not isinstance(host_network, bool):
        raise _bad(f"host_network {host_network!r} is not true or false")

    return {
        "host_network": host_network,
        "namespace": namespace,
        "node_selector": dict(node_selector),
        "tolerations": tolerations,
        "image_pull_secrets": list(pull_secrets),
        "image_pull_policy": pull_policy,
        "volumes": volumes,
        "memory": memory,
        "cpus": cpus,
        "shm_size": shm_size,
        "service_account": service_account,
        "ttl_seconds_after_finished": ttl,
    }


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
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted(req.env.items())]
    if req.num_nodes > 1:
        env += [
            {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
            {"name": "NUM_NODES", "value": str(req.num_nodes)},
            {"name": "WORLD_SIZE", "value": str(req.num_nodes)},
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
