"""Lepton options and settings (the single source for validation, list_platforms help and the README)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationInfo, model_validator

from tao_mcp.drivers.lepton.client import GATEWAY_BASE
from tao_mcp.drivers.options import BlankIsNone, CommaList, Number, PlatformOptions, PlatformSettings, settings_of
from tao_mcp.errors import TaoError

DEFAULT_TTL_S = 3 * 24 * 3600  # the platform's own default: a finished job stays listed 3 days
LEPTON_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
PULL_SECRET = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MOUNT_PATH = re.compile(r"/[A-Za-z0-9_./-]*")
MOUNT_FROM = re.compile(r"[a-z-]+:[A-Za-z0-9_.-]+")


def _fullmatch(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not pattern.fullmatch(item):
                raise ValueError(f"{item!r} is not {what}")
        return value

    return AfterValidator(check)


def _mount(item: Any) -> dict[str, str]:
    """{path, mount_path, from} or 'volume:path:mount_path' ('node-nfs:volume:path:mount_path', 'path:mount_path')."""
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
            raise ValueError(f"{item!r} is not volume:path:mount_path")
    if not isinstance(item, Mapping) or set(item) - {"path", "mount_path", "from"}:
        raise ValueError(f"{item!r} has keys other than path, mount_path, from")
    path, mount_path = str(item.get("path") or "/"), str(item.get("mount_path") or "")
    for label, p in (("path", path), ("mount_path", mount_path)):
        if not MOUNT_PATH.fullmatch(p) or ".." in p.split("/"):
            raise ValueError(f"{label} {p!r} is not a plain absolute path")
    mount = {"path": path, "mount_path": mount_path}
    if item.get("from"):
        source = str(item["from"])
        if not MOUNT_FROM.fullmatch(source):
            raise ValueError(f"from {source!r} is not like node-nfs:<volume>")
        mount["from"] = source
    return mount


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str | Mapping) else value


class LeptonOptions(PlatformOptions):
    platform: ClassVar[str] = "lepton"
    label: ClassVar[str] = "Lepton"

    node_group: Annotated[str | None, BlankIsNone, _fullmatch(LEPTON_NAME, "a plain Lepton name")] = Field(
        None, description="dedicated node group name or id (default LEPTON_NODE_GROUP, or the workspace's only one)"
    )
    resource_shape: Annotated[str | None, BlankIsNone, _fullmatch(LEPTON_NAME, "a plain Lepton name")] = Field(
        None, description="shape id, e.g. gpu.1xh100 (default: the exact, else smallest larger, /shapes match)"
    )
    mounts: Annotated[list[Annotated[Any, AfterValidator(_mount)]] | None, BlankIsNone, BeforeValidator(_listed)] = (
        Field(
            None,
            description="list of {path, mount_path, from: node-nfs:<volume>} or 'volume:path:mount_path'; path is "
            "inside the workspace's storage path prefix on that volume (prepended when missing)",
        )
    )
    persistent_results: bool | None = Field(
        None,
        description="true = mount the node group's NFS/Lustre volume; results at file:///mnt/<volume>/tao-mcp/<job_id>",
    )
    image_pull_secrets: Annotated[CommaList | None, BlankIsNone, _fullmatch(PULL_SECRET, "a secret name")] = Field(
        None,
        description="list of workspace image-pull secret names (default for nvcr.io images with NGC_KEY set: "
        "the workspace secret LEPTON_NGC_PULL_SECRET, created once from NGC_KEY)",
    )
    ttl_seconds_after_finished: Annotated[Number | None, BlankIsNone, Field(ge=0)] = Field(
        None, description=f"seconds a finished job stays listed (default {DEFAULT_TTL_S}: 3 days)"
    )
    max_job_failure_retry: Annotated[Number | None, BlankIsNone, Field(ge=0)] = Field(
        None, description="Lepton retries of a failed job"
    )
    shared_memory_size: Annotated[Number | None, BlankIsNone, Field(ge=0)] = Field(
        None, description="/dev/shm size in MiB"
    )
    intra_job_communication: bool | None = Field(None, description="true/false (default true when num_nodes > 1)")

    @model_validator(mode="after")
    def _defaults(self, info: ValidationInfo) -> LeptonOptions:
        settings = settings_of(info)
        self.node_group = self.node_group or (settings.node_group if settings is not None else None)
        self.mounts = list(self.mounts or [])
        self.persistent_results = bool(self.persistent_results)
        self.image_pull_secrets = list(self.image_pull_secrets or [])
        if self.ttl_seconds_after_finished is None:
            self.ttl_seconds_after_finished = DEFAULT_TTL_S
        return self


def _seconds(value: float) -> float:
    if value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://", value):
        raise ValueError("is not an http(s) URL such as https://<host>/api/v2/workspaces/<id>")
    return value.rstrip("/") if value else value


class LeptonSettings(PlatformSettings):
    control_plane: ClassVar[tuple[str, ...]] = ("LEPTON_AUTH_TOKEN", "LEPTON_WORKSPACE_ID", "LEPTON_WORKSPACE_URL")

    workspace_id: Annotated[str | None, _fullmatch(re.compile(r"[A-Za-z0-9_-]+"), "a workspace id")] = Field(
        None, alias="LEPTON_WORKSPACE_ID", description="workspace id, required (or LEPTON_WORKSPACE_URL)"
    )
    auth_token: SecretStr = Field(alias="LEPTON_AUTH_TOKEN", description="the workspace API token (bearer), required")
    workspace_url: Annotated[str | None, AfterValidator(_http_url)] = Field(
        None,
        alias="LEPTON_WORKSPACE_URL",
        description="the full …/api/v2/workspaces/<id> base, instead of the DGX Cloud gateway form",
    )
    node_group: str | None = Field(
        None, alias="LEPTON_NODE_GROUP", description="default node group when the workspace has several"
    )
    ngc_key: SecretStr | None = Field(
        None, alias="NGC_KEY", description="NGC API key: the nvcr.io image-pull secret is created from it (once)"
    )
    ngc_pull_secret: Annotated[str, _fullmatch(PULL_SECRET, "a secret name")] = Field(
        "tao-mcp-nvcr",
        alias="LEPTON_NGC_PULL_SECRET",
        description="name of the workspace image-pull secret for nvcr.io (tao-mcp-nvcr); reused when it exists",
    )
    http_timeout: Annotated[float, AfterValidator(_seconds)] = Field(
        20.0, alias="LEPTON_HTTP_TIMEOUT_S", description="seconds per API request (20)"
    )
    unk_grace: Annotated[float, AfterValidator(_seconds)] = Field(
        300.0, alias="LEPTON_UNK_GRACE_S", description="seconds state UNK is tolerated before it counts (300)"
    )

    @model_validator(mode="after")
    def _workspace(self) -> LeptonSettings:
        if not (self.workspace_url or self.workspace_id):
            raise TaoError(
                "E_MISSING_CREDENTIALS",
                "neither LEPTON_WORKSPACE_ID nor LEPTON_WORKSPACE_URL is set",
                "set LEPTON_WORKSPACE_ID (or the full LEPTON_WORKSPACE_URL)",
            )
        return self

    @property
    def base_url(self) -> str:
        return self.workspace_url or GATEWAY_BASE.format(workspace_id=self.workspace_id)
