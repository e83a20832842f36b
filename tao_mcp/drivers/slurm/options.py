"""SLURM options and settings (the single source for validation, list_platforms help and the README)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, model_validator

from tao_mcp.config import state_dir_path
from tao_mcp.drivers.options import BlankIsNone, CommaList, Number, PlatformOptions, PlatformSettings, settings_of
from tao_mcp.drivers.slurm import script
from tao_mcp.errors import TaoError

Launcher = Literal["pyxis", "apptainer", "singularity", "enroot", "charliecloud", "none"]


def _checked(check: Callable[[Any], Any]) -> AfterValidator:
    """A script-level check (which raises TaoError) as a field validator: its cause becomes the field's problem."""

    def run(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except TaoError as exc:
            raise ValueError(exc.cause) from None

    return AfterValidator(run)


def _word(value: str) -> str:
    if not script.SAFE_WORD.match(value):
        raise ValueError("is not a plain SLURM name ([A-Za-z0-9_.-]+)")
    return value


def _memory(value: Any) -> Any:
    if value is None or value == "" or isinstance(value, bool):
        return value if value != "" else None
    text = str(value).strip().upper()
    if text.endswith("B") and len(text) > 1 and not text[-2].isdigit():
        text = text[:-1]  # 16GB -> 16G
    if not script.MEMORY.match(text):
        raise ValueError("is not digits with an optional K/M/G/T suffix")
    return text


def _browse_roots(value: Any) -> list[str]:
    roots = value if isinstance(value, list) else [r.strip() for r in str(value or "").split(",") if r.strip()]
    try:
        return [script.check_path(str(root), "SLURM_BROWSE_ROOTS entry") for root in roots]
    except TaoError as exc:
        raise ValueError(exc.cause) from None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _setting_mounts(value: Any) -> list[str]:
    if isinstance(value, list):
        return value
    try:
        return script.mounts_from_setting(str(value))
    except TaoError as exc:
        raise ValueError(exc.cause) from None


TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?$")


def _minutes(value: Any) -> int:
    """Minutes from 90, "90", "HH:MM[:SS]" or "D-HH:MM[:SS]" (sbatch --time's forms); a started minute counts."""
    text = str(value).strip()
    if text.isdigit():
        minutes = int(text)
    else:
        match = TIME.match(text)
        if not match:
            raise ValueError("is not minutes or [D-]HH:MM[:SS]")
        days, hours, mins, secs = (int(g) if g else 0 for g in match.groups())
        minutes = days * 1440 + hours * 60 + mins + (1 if secs else 0)
    if minutes < 1:
        raise ValueError("is shorter than a minute")
    return minutes


Word = Annotated[str, AfterValidator(_word)]


class SlurmOptions(PlatformOptions):
    platform: ClassVar[str] = "slurm"
    label: ClassVar[str] = "SLURM"

    partition: Annotated[Word | None, BlankIsNone] = Field(None, description="partition name (default SLURM_PARTITION)")
    account: Annotated[Word | None, BlankIsNone] = Field(None, description="account charged (default SLURM_ACCOUNT)")
    mounts: Annotated[CommaList | None, _checked(script.normalize_mounts)] = Field(
        None, description="list of src:dst[:ro] container mounts (added to SLURM_CONTAINER_MOUNTS)"
    )
    cpus: Annotated[Number, Field(ge=1)] | None = Field(None, description="CPUs per task, e.g. 8")
    memory: Annotated[str | None, BeforeValidator(_memory)] = Field(None, description="memory per node, e.g. 64G")
    launcher: Annotated[Launcher | None, BlankIsNone] = Field(
        None,
        description="pyxis | apptainer | singularity | enroot | charliecloud | none (default SLURM_CONTAINER_LAUNCHER)",
    )
    hold: bool = Field(False, description="true = submit held (sbatch --hold); release with scontrol release")
    exclusive: bool = Field(False, description="true = whole nodes, shared with no other job (sbatch --exclusive)")
    requeue: bool | None = Field(
        None,
        description="true = SLURM requeues the job after a node failure or preemption (--requeue), false = never "
        "(--no-requeue); default: the cluster's JobRequeue. A restarted job resumes from its latest checkpoint",
    )
    input_cache: Annotated[str | None, BlankIsNone, _checked(lambda v: script.check_path(v, "input_cache"))] = Field(
        None,
        description="shared folder (Lustre) where downloaded s3:// inputs are kept by URI and ETag and reused by "
        "later jobs (default SLURM_INPUT_CACHE)",
    )

    @model_validator(mode="after")
    def _defaults(self, info: ValidationInfo) -> SlurmOptions:
        settings = settings_of(info)
        if settings is not None:
            self.partition = self.partition or settings.partition
            self.account = self.account or settings.account
            self.launcher = self.launcher or settings.container_launcher
            self.mounts = list(dict.fromkeys([*settings.container_mounts, *(self.mounts or [])]))
            self.input_cache = self.input_cache or settings.input_cache
        else:
            self.launcher = self.launcher or "pyxis"
            self.mounts = self.mounts or []
        return self


class SlurmSettings(PlatformSettings):
    control_plane: ClassVar[tuple[str, ...]] = (
        "SLURM_HOSTNAME",
        "SLURM_USER",
        "SSH_KEY_PATH",
        "SSH_AUTH_SOCK",
        "SLURM_SSH_KNOWN_HOSTS",
    )

    hostnames: Annotated[CommaList, Field(min_length=1)] = Field(
        alias="SLURM_HOSTNAME",
        description="login node(s), required; a comma-separated list fails over for read-only calls (never sbatch)",
    )
    user: Word = Field(alias="SLURM_USER", description="login name, required")
    key_path: str | None = Field(
        None, alias="SSH_KEY_PATH", description="private key file (this or SSH_AUTH_SOCK is required)"
    )
    agent_sock: str | None = Field(None, alias="SSH_AUTH_SOCK", description="an ssh-agent socket")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(22, alias="SLURM_SSH_PORT", description="sshd port (22)")
    known_hosts: str | None = Field(
        None, alias="SLURM_SSH_KNOWN_HOSTS", description="pinned host keys, read only (default ~/.ssh/known_hosts)"
    )
    strict_host_keys: Annotated[Literal["yes", "accept-new", "no"], BeforeValidator(_lower)] = Field(
        "accept-new",
        alias="SLURM_SSH_STRICT_HOST_KEY_CHECKING",
        description="accept-new (default: a new login node's key is learned and kept) or yes (known keys only)",
    )
    partition: Word | None = Field(None, alias="SLURM_PARTITION", description="default partition (cluster default)")
    account: Word | None = Field(None, alias="SLURM_ACCOUNT", description="default account (cluster default)")
    base_results_dir: Annotated[str | None, _checked(lambda v: script.check_path(v, "SLURM_BASE_RESULTS_DIR"))] = Field(
        None,
        alias="SLURM_BASE_RESULTS_DIR",
        description="job files under <dir>/<job_id>/, results under results/<job_id> (default <remote home>/tao-mcp)",
    )
    container_launcher: Annotated[Launcher, BeforeValidator(_lower)] = Field(
        "pyxis",
        alias="SLURM_CONTAINER_LAUNCHER",
        description="pyxis (default), apptainer, singularity, enroot, charliecloud or none",
    )
    container_mounts: Annotated[list[str], BeforeValidator(_setting_mounts)] = Field(
        default_factory=list,
        alias="SLURM_CONTAINER_MOUNTS",
        description="src:dst[:ro],… added to every container job",
    )
    input_cache: Annotated[str | None, _checked(lambda v: script.check_path(v, "SLURM_INPUT_CACHE"))] = Field(
        None,
        alias="SLURM_INPUT_CACHE",
        description="default input_cache: a shared folder for downloaded s3:// inputs, reused across jobs",
    )
    browse_roots: Annotated[list[str], BeforeValidator(_browse_roots)] = Field(
        default_factory=list,
        alias="SLURM_BROWSE_ROOTS",
        description="folders lustre:// browsing may read, comma-separated (default: the results base dir and the "
        "SLURM_CONTAINER_MOUNTS sources); anything else is E_POLICY",
    )
    default_time_limit: Annotated[int, BeforeValidator(_minutes)] = Field(
        240,
        alias="SLURM_DEFAULT_TIME_LIMIT",
        description="time limit of a job submitted without time_limit: minutes or [D-]HH:MM[:SS] (default 4:00:00)",
    )
    signal_margin: Annotated[int, Field(ge=10)] = Field(
        300,
        alias="SLURM_SIGNAL_MARGIN",
        description="seconds before the time limit SLURM sends USR1 so the runner uploads the results "
        "(--signal=B:USR1@N; at most half the time limit; default 300)",
    )
    cpus_per_gpu: Annotated[int, Field(ge=1)] = Field(
        8, alias="SLURM_CPUS_PER_GPU", description="CPUs per task per GPU when the job gives no cpus (default 8)"
    )
    gpus_per_node: Annotated[int, Field(ge=1)] | None = Field(
        None,
        alias="SLURM_GPUS_PER_NODE",
        description="GPUs of one node: a single-node job asking for a multiple of it is split across nodes, "
        "anything else larger is E_GPU_LAYOUT (default: unknown, gpu_count is asked per node as given)",
    )
    image_cache: Annotated[str | None, _checked(lambda v: script.check_path(v, "SLURM_IMAGE_CACHE"))] = Field(
        None,
        alias="SLURM_IMAGE_CACHE",
        description="shared folder where pyxis/enroot (squashfs) and apptainer (sif) images are imported once per "
        "cluster and reused by every job (default: none, pyxis imports per job, enroot into the job dir)",
    )
    state_dir: str | None = Field(
        None,
        alias="TAO_MCP_STATE_DIR",
        description="the server's state folder; accept-new keeps learned login-node keys in its known_hosts",
    )
    xdg_state_home: str | None = Field(
        None, alias="XDG_STATE_HOME", description="state folder base when TAO_MCP_STATE_DIR is unset"
    )

    def limits(self) -> script.Limits:
        """What these settings decide for every job's layout (script.layout)."""
        return script.Limits(
            default_time_minutes=self.default_time_limit,
            signal_margin_s=self.signal_margin,
            cpus_per_gpu=self.cpus_per_gpu,
            gpus_per_node=self.gpus_per_node,
            image_cache=self.image_cache,
        )

    def learned_hosts(self) -> str:
        """The known_hosts file accept-new writes: in the server's state folder."""
        state = {"TAO_MCP_STATE_DIR": self.state_dir or "", "XDG_STATE_HOME": self.xdg_state_home or ""}
        return str(state_dir_path(state) / "known_hosts")
