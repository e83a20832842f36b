"""Brev options and settings (the single source for validation, list_platforms help and the README)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field, PrivateAttr, SecretStr, ValidationInfo, computed_field, model_validator

from tao_mcp.drivers.options import BlankIsNone, PlatformOptions, PlatformSettings, matching, settings_of
from tao_mcp.errors import TaoError
from tao_mcp.secret_names import is_secret_name

INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
TYPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+/-]{0,80}$")
SHM_SIZE = re.compile(r"^[0-9]+[bkmgBKMG]?$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
DEFAULT_RESULTS_DIR = "/home/ubuntu/tao-results"


def results_directory(path: str | None) -> str | None:
    if path is None:
        return None
    path = path.rstrip("/") or "/"
    if not SAFE_PATH.match(path) or "/../" in f"{path}/" or path == "/":
        raise ValueError(
            f"is not a plain absolute directory (letters, digits and _ . / -, no ..), e.g. {DEFAULT_RESULTS_DIR}"
        )
    return path


def child_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment brev runs with: the server's, minus every secret-named variable (brev needs none)."""
    return {k: v for k, v in settings.items() if isinstance(v, str) and not is_secret_name(k)}


class BrevOptions(PlatformOptions):
    platform: ClassVar[str] = "brev"
    label: ClassVar[str] = "Brev"

    instance: Annotated[str | None, BlankIsNone, matching(INSTANCE_NAME, "an instance name")] = Field(
        None,
        description="existing instance to reuse (list_instances), or the name for a new one (default BREV_INSTANCE)",
    )
    type: Annotated[str | None, BlankIsNone, matching(TYPE_NAME, "an instance type")] = Field(
        None, description="instance type to create when the instance does not exist (brev search)"
    )
    gpu_name: Annotated[str | None, BlankIsNone, matching(TYPE_NAME, "a GPU name")] = Field(
        None, description="GPU name (e.g. L4, A100): create the cheapest such type when the instance does not exist"
    )
    shm_size: Annotated[str | None, BlankIsNone, matching(SHM_SIZE, "a size such as 16g")] = Field(
        None, description="docker --shm-size, e.g. 16g"
    )
    results_dir: Annotated[str | None, BlankIsNone, AfterValidator(results_directory)] = Field(
        None,
        description="absolute results directory on the instance (default: S3 when S3_BUCKET_NAME is set, else "
        "BREV_RESULTS_DIR); instance disk dies with the instance",
    )

    @computed_field  # stored with the job: the launch creates the instance when it does not exist
    @property
    def create(self) -> bool:
        return bool(self.type or self.gpu_name)

    @model_validator(mode="after")
    def _instance(self, info: ValidationInfo) -> BrevOptions:
        if self.type and self.gpu_name:
            raise ValueError("type and gpu_name: give one, not both")
        settings = settings_of(info)
        self.instance = self.instance or (settings.instance if settings is not None else None)
        if self.instance is None:
            if not self.create:
                raise TaoError(
                    "E_BAD_INPUT",
                    "options.instance: Brev jobs need an instance: none was named and BREV_INSTANCE is not set",
                    "pass options={'instance': '<name>'} (list_instances shows yours), or options={'gpu_name': 'L4'} "
                    "/ {'type': '<type>'} to create one (it bills until delete_instance)",
                )
            self.instance = f"tao-mcp-{secrets.token_hex(3)}"
        return self


def _seconds(value: float) -> float:
    if value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


class BrevSettings(PlatformSettings):
    control_plane: ClassVar[tuple[str, ...]] = ("BREV_API_TOKEN", "BREV_CLI")

    api_token: SecretStr | None = Field(
        None,
        alias="BREV_API_TOKEN",
        description="logs brev in again when its session expires (optional with an existing `brev login`)",
    )
    instance: Annotated[str | None, matching(INSTANCE_NAME, "an instance name brev ls shows")] = Field(
        None, alias="BREV_INSTANCE", description="default instance for jobs"
    )
    results_dir: Annotated[str, AfterValidator(results_directory)] = Field(
        DEFAULT_RESULTS_DIR,
        alias="BREV_RESULTS_DIR",
        description=f"results directory on the instance ({DEFAULT_RESULTS_DIR}) when S3 is not configured",
    )
    cli: str | None = Field(None, alias="BREV_CLI", description="the brev binary (default: brev on the PATH)")
    cli_timeout: Annotated[float, AfterValidator(_seconds)] = Field(
        60.0, alias="BREV_CLI_TIMEOUT", description="seconds per brev call (60)"
    )
    ready_timeout: Annotated[float, AfterValidator(_seconds)] = Field(
        40.0, alias="BREV_READY_TIMEOUT", description="seconds submit waits for a new instance (40)"
    )
    _child_env: dict[str, str] = PrivateAttr(default_factory=dict)
    _s3_results: bool = PrivateAttr(default=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        settings = super().from_env(env)
        settings._child_env = child_env(env)  # brev runs with the server's environment (PATH, HOME), no secrets
        keys = (env.get("ACCESS_KEY") and env.get("SECRET_KEY")) or (
            env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")
        )
        settings._s3_results = bool(env.get("S3_BUCKET_NAME") and keys)  # the same test as the entrypoint builder's
        return settings

    @property
    def s3_results(self) -> bool:
        """S3 is configured (S3_BUCKET_NAME with keys): results go to the bucket, as on every other platform."""
        return self._s3_results

    @property
    def child_environment(self) -> dict[str, str]:
        return dict(self._child_env)

    def token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None
