"""Pydantic output models: the public contract of every tool (outputSchema + structuredContent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

StatusName = Literal["Pending", "Running", "Paused", "Complete", "Error", "Canceled", "Canceling", "Unknown"]


class CredentialState(BaseModel):
    name: str
    present: bool
    required: bool
    description: str = ""
    only_when: str | None = None


class CredentialGroup(BaseModel):
    name: str
    require_one_of: list[str]
    satisfied: bool
    present: list[str] = Field(description="members that are set (names only)")


class PlatformSummary(BaseModel):
    name: str
    display_name: str
    aliases: list[str]
    description: str
    available: bool = Field(description="this tao-mcp version has a driver for the platform")
    ready: bool = Field(description="the driver is available and every required credential is present")
    missing: list[str] = Field(description="names of required variables (or groups) that are not set")


class PlatformDetail(PlatformSummary):
    credentials: list[CredentialState]
    credential_groups: list[CredentialGroup]
    storage: dict[str, str]
    resource_defaults: dict[str, str | int | float | bool | None]
    options: dict[str, str] = Field(default_factory=dict, description="submit_job options this platform accepts")


class PlatformList(BaseModel):
    platforms: list[PlatformSummary] = Field(default_factory=list)
    platform: PlatformDetail | None = None
    next: str


class JobStatus(BaseModel):
    job_id: str
    platform: str
    status: StatusName
    raw_state: str
    message: str
    pending_reason: str | None = None
    backend_id: str | None = None
    backend_name: str
    exit_code: int | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str
    results_location: str | None = None
    backend_reachable: bool = True
    next: str


class SubmitResult(BaseModel):
    job_id: str
    platform: str
    status: StatusName
    backend_id: str | None = None
    backend_name: str
    results_location: str | None = None
    dry_run: bool = False
    reused: bool = Field(False, description="an earlier submit with the same idempotency_key answered")
    preview: dict[str, str] | None = Field(None, description="dry run only: rendered files and the launch command")
    message: str = ""
    next: str


class WaitResult(JobStatus):
    done: bool
    waited_s: float


class LogPage(BaseModel):
    job_id: str
    lines: list[str]
    first_line: int = Field(description="0-based position of the first returned line in the log")
    truncated: bool = Field(description="more lines exist than were returned")
    next_cursor: str | None = Field(description="pass as cursor to read the lines after this page")
    status: StatusName
    next: str


class EvidenceItem(BaseModel):
    source: str
    text: str
    line: int | None = None


class FailureAnalysis(BaseModel):
    job_id: str = ""
    status: StatusName = "Unknown"
    category: str
    err_class: Literal["ERR_PROGRAM", "ERR_INFRA", "ERR_RESOURCE", "ERR_CONFIG", "ERR_UNKNOWN", "NONE"]
    retriable: bool | None
    confidence: Literal["high", "medium", "low"]
    summary: str
    evidence: list[EvidenceItem] = Field(default_factory=list)
    suggestion: str
    node_events: list[str] = Field(default_factory=list)
    next: str = ""


class JobSummary(BaseModel):
    job_id: str
    platform: str
    status: StatusName
    backend_id: str | None
    created_at: str
    command: str = Field(description="first 120 characters of the command")


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None
    next: str
