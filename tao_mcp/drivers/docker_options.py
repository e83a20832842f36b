"""Docker options and settings (the single source for validation, list_platforms help and the README)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, SecretStr, ValidationInfo, model_validator

from tao_mcp.drivers.options import (
    CommaList,
    PlatformOptions,
    PlatformSettings,
    PolicyFacts,
    PositiveFloat,
    matching,
    settings_of,
)

RESULTS_MOUNT = "/results"
PULL_POLICIES = ("missing", "always", "never")
SIZE = re.compile(r"^(\d+)\s*([bkmgt]?)(?:i?b)?$", re.IGNORECASE)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
PATH = re.compile(r"^/[A-Za-z0-9_.@+,=/ -]*$")
NETWORK = re.compile(r"^(?:container:)?[A-Za-z0-9][A-Za-z0-9_.-]*$")
CAPABILITY = re.compile(r"^(?:CAP_)?[A-Z_]+$")
# The engine's API socket: a bind of it (or of a folder holding it) hands the job the whole host.
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def parse_size(value: Any) -> str:
    """Docker size syntax (digits + b/k/m/g); 16G, 16GB, 16Gi and 1t are accepted."""
    match = SIZE.match(str(value).strip())
    if not match or isinstance(value, bool):
        raise ValueError("is not a size such as 512m or 16g")
    number, unit = int(match.group(1)), match.group(2).lower()
    if number <= 0:
        raise ValueError("must be larger than 0")
    if unit == "t":
        number, unit = number * 1024, "g"
    return f"{number}{unit}"


def parse_mount(spec: str) -> dict[str, Any]:
    """`src:dst[:ro|rw]` -> {source, target, read_only, kind}; src is an absolute host path or a volume name."""
    parts = spec.strip().split(":")
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        read_only = parts[2] == "ro"
        parts = parts[:2]
    else:
        read_only = False
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{spec!r} is not src:dst[:ro]")
    source, target = parts[0], parts[1].rstrip("/") or "/"
    if not PATH.match(target) or ".." in target.split("/"):
        raise ValueError(f"target {target!r} is not an absolute path")
    if source.startswith("/"):
        if not PATH.match(source) or ".." in source.split("/"):
            raise ValueError(f"source {source!r} has unexpected characters")
        kind = "bind"
    elif NAME.match(source):
        kind = "volume"
    else:
        raise ValueError(f"source {source!r} is neither an absolute path nor a volume name")
    return {"source": source, "target": target, "read_only": read_only, "kind": kind}


def mount_text(mount: Mapping[str, Any]) -> str:
    return f"{mount['source']}:{mount['target']}" + (":ro" if mount["read_only"] else "")


def results_root_of(mounts: Iterable[Mapping[str, Any]]) -> str | None:
    writable = any(m["target"] == RESULTS_MOUNT and not m["read_only"] and m["kind"] == "bind" for m in mounts)
    return RESULTS_MOUNT if writable else None


def _mounts(values: list[str]) -> list[str]:
    parsed = [parse_mount(m) for m in values]
    targets = [m["target"] for m in parsed]
    if len(set(targets)) != len(targets):
        raise ValueError("two mounts have the same target")
    return [mount_text(m) for m in parsed]


def _gpus(value: Any) -> str | int:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("is not 'all' or a count >= 0")
    return value


def _is_root(user: str | None) -> bool:
    return user is not None and user.partition(":")[0] in ("0", "root")


def _exposes(source: str, socket: str) -> bool:
    source = source.rstrip("/") or "/"
    return socket == source or socket.startswith(source.rstrip("/") + "/")


class DockerOptions(PlatformOptions):
    platform: ClassVar[str] = "docker"
    label: ClassVar[str] = "Docker"

    mounts: Annotated[CommaList, AfterValidator(_mounts)] | None = Field(
        None,
        description="list of src:dst[:ro] (host path or named volume); host paths only under "
        "TAO_MCP_DOCKER_MOUNT_ROOTS; a writable bind on /results keeps results on the host (TAO_RESULTS_ROOT=/results)",
    )
    memory: Annotated[str, BeforeValidator(parse_size)] | None = Field(
        None, description="memory limit, e.g. 512m or 16g (no swap on top)"
    )
    cpus: Annotated[PositiveFloat, Field(gt=0)] | None = Field(None, description="number of CPUs, > 0, e.g. 4")
    shm_size: Annotated[str, BeforeValidator(parse_size)] | None = Field(None, description="/dev/shm size, e.g. 2g")
    user: Annotated[str, matching(USER, "uid[:gid] or a user name")] | None = Field(
        None, description="uid[:gid] or user name (uid 0 / root needs TAO_MCP_ALLOW_HOST_ACCESS=1)"
    )
    network: Annotated[str, matching(NETWORK, "a network name")] | None = Field(
        None,
        description="bridge | none | a network name; host (the host's 127.0.0.1) needs TAO_MCP_ALLOW_HOST_ACCESS=1",
    )
    pull: Literal["missing", "always", "never"] | None = Field(
        None, description="missing | always | never (default DOCKER_PULL_POLICY, else missing)"
    )
    gpus: Annotated[str | int, PlainValidator(_gpus)] | None = Field(
        None, description="'all' or a count; overrides gpu_count"
    )
    runtime: Annotated[str, matching(NAME, "a runtime name")] | None = Field(
        None, description="container runtime, e.g. nvidia"
    )
    workdir: Annotated[str, matching(PATH, "an absolute path")] | None = Field(
        None, description="absolute working directory"
    )
    ipc: Literal["private", "shareable", "none", "host"] | None = Field(
        None, description="IPC namespace: private | shareable | none; host needs TAO_MCP_ALLOW_HOST_ACCESS=1"
    )
    pid: Literal["host"] | None = Field(None, description="host = the host's PID namespace (host access)")
    privileged: bool = Field(False, description="true = a privileged container (host access)")
    cap_add: (
        Annotated[
            list[Annotated[str, matching(CAPABILITY, "a capability name")]],
            BeforeValidator(lambda v: [str(c).upper() for c in v] if isinstance(v, list | tuple) else v),
        ]
        | None
    ) = Field(None, description="extra Linux capabilities, e.g. ['SYS_PTRACE'] (host access)")

    @model_validator(mode="after")
    def _defaults(self, info: ValidationInfo) -> DockerOptions:
        settings = settings_of(info)
        self.mounts = self.mounts or []
        self.pull = self.pull or (settings.pull_policy if settings is not None else "missing")
        return self

    @classmethod
    def policy_facts(cls, options: Mapping[str, Any]) -> PolicyFacts:
        facts = PolicyFacts()
        network = options.get("network") or ""
        if network == "host" or network.startswith("container:"):
            facts.host_access.append(f"options.network={network!r}")
        for key in ("ipc", "pid"):
            if options.get(key) == "host":
                facts.host_access.append(f"options.{key}='host'")
        if options.get("privileged"):
            facts.host_access.append("options.privileged=true")
        if options.get("cap_add"):
            facts.host_access.append(f"options.cap_add={options['cap_add']!r}")
        if _is_root(options.get("user")):
            facts.host_access.append(f"options.user={options['user']!r} (uid 0)")
        for index, text in enumerate(options.get("mounts") or []):
            mount = parse_mount(text)
            if mount["kind"] != "bind":
                continue
            if any(_exposes(mount["source"], socket) for socket in ENGINE_SOCKETS):
                facts.never.append(f"options.mounts[{index}] {mount['source']!r} exposes the Docker engine socket")
            facts.binds.append((f"options.mounts[{index}]", mount["source"]))
        return facts


class DockerSettings(PlatformSettings):
    control_plane: ClassVar[tuple[str, ...]] = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")

    host: str | None = Field(
        None,
        alias="DOCKER_HOST",
        description="the engine (default: the local socket unix:///var/run/docker.sock); "
        "DOCKER_TLS_VERIFY / DOCKER_CERT_PATH are honoured",
    )
    tls_verify: str | None = Field(None, alias="DOCKER_TLS_VERIFY", description="1 = verify the engine's TLS")
    cert_path: str | None = Field(None, alias="DOCKER_CERT_PATH", description="folder with the client TLS files")
    pull_policy: Annotated[Literal["missing", "always", "never"], BeforeValidator(lambda v: str(v).lower())] = Field(
        "missing", alias="DOCKER_PULL_POLICY", description="missing (default) | always | never"
    )
    ngc_key: SecretStr | None = Field(
        None, alias="NGC_KEY", description="pull auth for nvcr.io images ($oauthtoken), never stored by a login"
    )

    def client_environment(self) -> dict[str, str]:
        """The DOCKER_* variables the docker SDK reads (docker.from_env)."""
        names = {"DOCKER_HOST": self.host, "DOCKER_TLS_VERIFY": self.tls_verify, "DOCKER_CERT_PATH": self.cert_path}
        return {k: v for k, v in names.items() if v}
