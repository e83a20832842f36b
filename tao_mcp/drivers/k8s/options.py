"""Kubernetes options and settings (the single source for validation, list_platforms help and the README)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, model_validator

from tao_mcp.drivers.options import (
    BlankIsNone,
    Number,
    PlatformOptions,
    PlatformSettings,
    PolicyFacts,
    settings_of,
    split_commas,
)

DEFAULT_TTL_S = 7 * 24 * 3600  # finished Jobs stay a week (ttlSecondsAfterFinished; ignored where the gate is off)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
SLURM_MEMORY = re.compile(r"^([0-9]+)([KMGT])B?$", re.IGNORECASE)
VOLUME_SOURCES = ("pvc", "host_path", "config_map", "secret", "empty_dir")
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds", "toleration_seconds"}


def _name(value: Any, what: str = "", pattern: re.Pattern[str] = DNS_SUBDOMAIN) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        where = f"{what} {value!r} " if what else ""
        raise ValueError(f"{where}is not a valid Kubernetes name (lowercase letters, digits, '-')")
    return value


def _quantity(memory: bool) -> BeforeValidator:
    def check(value: Any) -> str:
        text = str(value).strip()
        if memory:
            match = SLURM_MEMORY.match(text)
            if match:  # SLURM-style 16G / 16GB means GiB, as in the SLURM option
                return f"{match.group(1)}{match.group(2).upper()}i"
        if isinstance(value, bool) or not QUANTITY.match(text) or float(re.sub(r"[A-Za-z]+$", "", text)) <= 0:
            raise ValueError("is not a positive Kubernetes quantity")
        return text

    return BeforeValidator(check)


def _node_selector(value: dict[str, str]) -> dict[str, str]:
    if not all(LABEL_KEY.match(k) and LABEL_VALUE.match(v) for k, v in value.items()):
        raise ValueError("must map label keys to label values, e.g. {'nvidia.com/gpu.product': 'A100'}")
    return value


def _toleration(tol: dict[str, Any]) -> dict[str, Any]:
    if not set(tol) <= TOLERATION_KEYS:
        raise ValueError("must be an object with key, operator, value, effect, tolerationSeconds")
    item = {k: v for k, v in tol.items() if k != "toleration_seconds"}
    if "toleration_seconds" in tol:
        item["tolerationSeconds"] = tol["toleration_seconds"]
    if item.get("operator", "Equal") not in ("Equal", "Exists"):
        raise ValueError("operator must be Equal or Exists")
    if item.get("effect") not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError("effect must be NoSchedule, PreferNoSchedule or NoExecute")
    seconds = item.get("tolerationSeconds")
    if "tolerationSeconds" in item and (isinstance(seconds, bool) or not isinstance(seconds, int)):
        raise ValueError("tolerationSeconds must be an integer")
    for key in ("key", "value"):
        if key in item and not isinstance(item[key], str):
            raise ValueError(f"{key} must be a string")
    return item


def _volume(item: Mapping[str, Any], index: int) -> dict[str, Any]:
    where = f"volumes[{index}]"
    unknown = sorted(set(item) - {"name", "mount_path", "read_only", "sub_path", *VOLUME_SOURCES})
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)}")
    sources = [key for key in VOLUME_SOURCES if item.get(key) not in (None, False, "")]
    if len(sources) != 1:
        raise ValueError(f"{where} needs exactly one of {', '.join(VOLUME_SOURCES)}")
    mount_path = item.get("mount_path")
    if not isinstance(mount_path, str) or not mount_path.startswith("/") or ":" in mount_path:
        raise ValueError(f"{where}.mount_path {mount_path!r} is not an absolute path")
    kind = sources[0]
    source = item[kind]
    if kind == "empty_dir":
        source = True
    elif kind == "host_path":
        if not isinstance(source, str) or not source.startswith("/"):
            raise ValueError(f"{where}.host_path {source!r} is not an absolute path")
    else:
        source = _name(source, f"{where}.{kind}")
    volume = {"name": f"vol-{index}", "mount_path": mount_path.rstrip("/") or "/", kind: source}
    volume["read_only"] = bool(item.get("read_only", False))
    if item.get("sub_path"):
        sub_path = item["sub_path"]
        if not isinstance(sub_path, str) or sub_path.startswith("/") or ".." in sub_path.split("/"):
            raise ValueError(f"{where}.sub_path {sub_path!r} must be a relative path without '..'")
        volume["sub_path"] = sub_path
    return volume


def _mount(text: str) -> dict[str, Any]:
    """host_src:dst[:ro] or pvc:CLAIM:dst[:ro] (the SLURM `mounts` form)."""
    parts = text.strip().split(":")
    read_only = parts[-1] in ("ro", "rw") and parts.pop() == "ro"
    if len(parts) == 3 and parts[0] == "pvc":
        return {"pvc": parts[1], "mount_path": parts[2], "read_only": read_only}
    if len(parts) == 2:
        return {"host_path": parts[0], "mount_path": parts[1], "read_only": read_only}
    raise ValueError(f"{text!r} is not host_src:dst[:ro] or pvc:CLAIM:dst[:ro]")


def _names(values: list[str]) -> list[str]:
    return [_name(v) for v in values]


class KubernetesOptions(PlatformOptions):
    platform: ClassVar[str] = "kubernetes"
    label: ClassVar[str] = "Kubernetes"
    input_only: ClassVar[frozenset[str]] = frozenset({"mounts"})  # folded into volumes

    namespace: Annotated[str | None, BlankIsNone, AfterValidator(lambda v: v and _name(v, pattern=DNS_LABEL))] = Field(
        None, description="namespace for the Job (default TAO_K8S_NAMESPACE, else default)"
    )
    node_selector: Annotated[dict[str, str] | None, BlankIsNone, AfterValidator(lambda v: v and _node_selector(v))] = (
        Field(None, description="{label: value} the node must carry")
    )
    tolerations: Annotated[list[Annotated[dict[str, Any], AfterValidator(_toleration)]] | None, BlankIsNone] = Field(
        None, description="list of {key, operator, value, effect, tolerationSeconds}"
    )
    image_pull_secrets: Annotated[
        list[str] | None, BlankIsNone, BeforeValidator(split_commas), AfterValidator(_names)
    ] = Field(None, description="names of existing docker-registry Secrets (e.g. for nvcr.io)")
    image_pull_policy: Annotated[Literal["Always", "IfNotPresent", "Never"] | None, BlankIsNone] = Field(
        None, description="Always | IfNotPresent | Never"
    )
    volumes: Annotated[list[dict[str, Any]] | None, BlankIsNone] = Field(
        None,
        description="list of {mount_path, pvc | host_path | config_map | secret | empty_dir, read_only, sub_path}; "
        "a writable volume at /results keeps results; host_path and secret need TAO_MCP_ALLOW_HOST_ACCESS=1",
    )
    mounts: Annotated[
        list[Annotated[str, AfterValidator(_mount)]] | None, BlankIsNone, BeforeValidator(split_commas)
    ] = Field(None, description="host_src:dst[:ro] (host access) or pvc:CLAIM:dst[:ro]")
    memory: Annotated[str | None, BlankIsNone, _quantity(memory=True)] = Field(
        None, description="memory limit, e.g. 16G (GiB) or 512Mi"
    )
    cpus: Annotated[str | None, BlankIsNone, _quantity(memory=False)] = Field(
        None, description="CPU limit, e.g. 8 or 500m"
    )
    shm_size: Annotated[str | None, BlankIsNone, _quantity(memory=True)] = Field(
        None, description="size of a memory-backed /dev/shm, e.g. 8G"
    )
    service_account: Annotated[str | None, BlankIsNone, AfterValidator(lambda v: v and _name(v))] = Field(
        None, description="ServiceAccount the pod runs as (needs TAO_MCP_ALLOW_HOST_ACCESS=1)"
    )
    ttl_seconds_after_finished: Annotated[Number, Field(ge=0)] = Field(
        DEFAULT_TTL_S, description=f"seconds a finished Job is kept (default {DEFAULT_TTL_S})"
    )
    host_network: bool = Field(
        False, description="true = the pod uses the node's network (needs TAO_MCP_ALLOW_HOST_ACCESS=1)"
    )

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> KubernetesOptions:
        settings = settings_of(info)
        self.namespace = self.namespace or (settings.namespace if settings is not None else "default")
        # `mounts` entries were checked and turned into volume records by their validator
        raw: list[Any] = [*(self.volumes or []), *(self.mounts or [])]
        volumes = [_volume(v, i) for i, v in enumerate(raw)]
        paths = [v["mount_path"] for v in volumes]
        if len(set(paths)) != len(paths):
            raise ValueError("two volumes are mounted at the same path")
        self.volumes, self.mounts = volumes, None
        self.node_selector = dict(self.node_selector or {})
        self.tolerations = list(self.tolerations or [])
        self.image_pull_secrets = list(self.image_pull_secrets or [])
        return self

    @classmethod
    def policy_facts(cls, options: Mapping[str, Any]) -> PolicyFacts:
        facts = PolicyFacts()
        if options.get("host_network"):
            facts.host_access.append("options.host_network=true")
        if options.get("service_account"):
            facts.host_access.append(f"options.service_account={options['service_account']!r}")
        for volume in options.get("volumes") or []:
            if "host_path" in volume:
                facts.host_access.append(f"hostPath volume {volume['host_path']!r} at {volume['mount_path']}")
            if "secret" in volume:
                facts.host_access.append(f"Secret volume {volume['secret']!r} at {volume['mount_path']}")
        return facts


class KubernetesSettings(PlatformSettings):
    control_plane: ClassVar[tuple[str, ...]] = ("KUBECONFIG", "TAO_K8S_CONTEXT", "KUBERNETES_SERVICE_HOST")

    kubeconfig: str | None = Field(
        None, alias="KUBECONFIG", description="kubeconfig file(s) (default ~/.kube/config, else in-cluster)"
    )
    context: str | None = Field(
        None, alias="TAO_K8S_CONTEXT", description="kubeconfig context (default: its current context)"
    )
    namespace: Annotated[str, AfterValidator(lambda v: _name(v, pattern=DNS_LABEL))] = Field(
        "default",
        alias="TAO_K8S_NAMESPACE",
        description="namespace of jobs without options.namespace (default: default)",
    )
    in_cluster_host: str | None = Field(
        None,
        alias="KUBERNETES_SERVICE_HOST",
        description="set by Kubernetes inside a pod: the in-cluster service account is used without a kubeconfig",
    )
