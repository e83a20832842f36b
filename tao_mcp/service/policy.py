"""The job policy: what a submitted job may ask of the hosts it runs on and of the server's credentials.

Safe by default, because the agent that writes submit_job calls may be prompt-injected:
- host access (Docker host network/pid/ipc, privileged, extra capabilities, uid 0; Kubernetes hostPath,
  host_network, service accounts, Secret volumes) is refused unless TAO_MCP_ALLOW_HOST_ACCESS=1;
- Docker binds host paths only under TAO_MCP_DOCKER_MOUNT_ROOTS (none by default; named volumes need no root),
  and never the Docker engine socket, whatever the settings;
- `secret_env` forwards only names listed in TAO_MCP_FORWARDABLE_SECRETS, and never the server's own
  control-plane credentials (backend tokens, SSH keys, kubeconfig, Docker TLS), even when listed.

The per-platform facts come from the option models (`<Platform>Options.policy_facts`); this module only rules.
Refusals are `E_POLICY: ... Fix: ...` naming the setting that would allow them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Annotated

from pydantic import AfterValidator, Field

from tao_mcp.drivers import MODELS, platform_models
from tao_mcp.drivers.options import CommaList, PlatformSettings, PolicyFacts
from tao_mcp.errors import TaoError

DEFAULT_FORWARDABLE = (
    "NGC_KEY",
    "HF_TOKEN",
    "WANDB_API_KEY",
    "ACCESS_KEY",
    "SECRET_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
# Settings families that steer the server itself: never forwarded, whatever TAO_MCP_FORWARDABLE_SECRETS says.
CONTROL_PLANE_PREFIXES = ("TAO_MCP_", "TAO_K8S_", "SLURM_", "SSH_", "LEPTON_", "BREV_", "DOCKER_", "KUBE")
HOST_ACCESS = "TAO_MCP_ALLOW_HOST_ACCESS"
MOUNT_ROOTS = "TAO_MCP_DOCKER_MOUNT_ROOTS"
FORWARDABLE = "TAO_MCP_FORWARDABLE_SECRETS"


def _absolute_roots(roots: list[str]) -> list[str]:
    for root in roots:
        if not root.startswith("/"):
            raise ValueError(f"{root!r} is not an absolute path")
    return [posixpath.normpath(root) for root in roots]


class PolicySettings(PlatformSettings):
    allow_host_access: bool = Field(
        False,
        alias=HOST_ACCESS,
        description="1 = jobs may use host-level options (Docker host network/pid/ipc, privileged, cap_add, uid 0; "
        "Kubernetes hostPath, host_network, service_account, Secret volumes); default 0 refuses them",
    )
    docker_mount_roots: Annotated[CommaList, AfterValidator(_absolute_roots)] = Field(
        default_factory=list,
        alias=MOUNT_ROOTS,
        description="comma-separated host folders Docker jobs may bind (default: none; named volumes need no root); "
        "the Docker socket is never bound",
    )
    forwardable_secrets: CommaList = Field(
        default_factory=lambda: list(DEFAULT_FORWARDABLE),
        alias=FORWARDABLE,
        description=f"comma-separated names secret_env may forward (default {', '.join(DEFAULT_FORWARDABLE)}); "
        "the server's control-plane credentials are never forwarded",
    )


@cache
def control_plane_names() -> frozenset[str]:
    """Every variable a platform's settings mark as control plane (tokens, SSH, kubeconfig, Docker TLS)."""
    names: set[str] = set()
    for platform in MODELS:
        names.update(platform_models(platform)[1].control_plane)
    return frozenset(names)


def is_control_plane(name: str) -> bool:
    return name in control_plane_names() or name.startswith(CONTROL_PLANE_PREFIXES)


def _under(path: str, roots: Iterable[str]) -> bool:
    path = posixpath.normpath(path)
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class JobPolicy:
    def __init__(self, settings: Mapping[str, str]) -> None:
        self.settings = PolicySettings.from_env(settings)

    def forwardable(self) -> list[str]:
        return [name for name in self.settings.forwardable_secrets if not is_control_plane(name)]

    def check_secret_env(self, names: Iterable[str]) -> None:
        """Names the agent asked to forward (the data path's own S3/NGC/HF names are the server's choice)."""
        names = list(dict.fromkeys(names))
        control = [n for n in names if is_control_plane(n)]
        if control:
            raise TaoError(
                "E_POLICY",
                f"secret_env: {', '.join(control)} {'is' if len(control) == 1 else 'are'} the server's own "
                "control-plane credentials and never go into a job",
                "drop them from secret_env; a job gets only job credentials (forwardable now: "
                f"{', '.join(self.forwardable()) or 'none'}; {FORWARDABLE} cannot add control-plane names)",
            )
        refused = [n for n in names if n not in self.settings.forwardable_secrets]
        if refused:
            raise TaoError(
                "E_POLICY",
                f"secret_env: {', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not in {FORWARDABLE}",
                f"forward only {', '.join(self.forwardable()) or 'nothing'}, or ask the operator to add the name to "
                f"{FORWARDABLE} in the server environment and restart the server",
            )

    def check_options(self, platform: str, facts: PolicyFacts) -> None:
        if facts.never:
            raise TaoError(
                "E_POLICY",
                "; ".join(facts.never),
                "remove it: no setting lets a job reach the container engine (it would control the host)",
            )
        if facts.host_access and not self.settings.allow_host_access:
            raise TaoError(
                "E_POLICY",
                f"{', '.join(facts.host_access)} would give the {platform} job access to the host, "
                f"which the job policy refuses ({HOST_ACCESS} is off)",
                f"drop {'it' if len(facts.host_access) == 1 else 'them'}; only if jobs may really control the host, "
                f"ask the operator to set {HOST_ACCESS}=1 in the server environment and restart the server",
            )
        roots = self.settings.docker_mount_roots
        outside = [f"{option} {path!r}" for option, path in facts.binds if not _under(path, roots)]
        if outside:
            where = ", ".join(roots) if roots else "none set"
            raise TaoError(
                "E_POLICY",
                f"{', '.join(outside)} binds a host path outside {MOUNT_ROOTS} ({where})",
                "use a named volume (e.g. 'results:/results') or a path under those folders, or ask the operator to "
                f"add the folder to {MOUNT_ROOTS} in the server environment and restart the server",
            )

    def describe(self, platform: str) -> dict[str, str]:
        """The policy in force for one platform (list_platforms)."""
        host = "allowed" if self.settings.allow_host_access else f"refused (set {HOST_ACCESS}=1 to allow)"
        policy = {
            "host_access": host,
            "forwardable_secrets": ", ".join(self.forwardable()) or "none",
            "never_forwarded": "the server's control-plane credentials (backend tokens, SSH keys, kubeconfig, "
            "Docker TLS; names starting " + ", ".join(CONTROL_PLANE_PREFIXES) + ")",
        }
        if platform == "docker":
            roots = ", ".join(self.settings.docker_mount_roots)
            policy["docker_mount_roots"] = roots or f"none: only named volumes (set {MOUNT_ROOTS})"
            policy["docker_socket"] = "never bound"
        return policy
