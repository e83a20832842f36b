"""Coded, actionable errors: every anticipated failure reaches the agent as `E_CODE: cause. Fix: ...`.

`CATALOGUE` names every code once, with what it means and the fix that applies when a raise site has nothing
more specific to say. `TaoError` refuses a code that is not in it, and a unit test checks that every code the
source spells is catalogued and that no catalogued code is unused. Codes marked `runner` are printed by the
in-container runner (`error E_CODE: ...` in the job log, read back by job_logs and failure_analysis); the runner
uses the standard library only, so it spells them itself.

docs/errors.md is generated from this catalogue: `python -m tao_mcp.errors > docs/errors.md`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    meaning: str  # one line: what went wrong
    fix: str  # the default fix, used when a raise site gives none
    runner: bool = False  # printed by the in-container runner (in the job log), not returned by a tool


CATALOGUE: dict[str, Code] = {
    # ---- arguments and settings ----
    "E_BAD_INPUT": Code(
        "an argument, option or cursor is malformed or out of range",
        "correct the value named in the message; the tool's input schema lists the allowed values",
    ),
    "E_BAD_URI": Code("a storage URI is malformed or uses an unsupported scheme", "write s3://, lustre:// or file://"),
    "E_BAD_SETTING": Code(
        "a server setting (environment variable or config file) is invalid",
        "correct the setting in the server environment, then restart the server",
    ),
    "E_MISSING_CREDENTIALS": Code(
        "a credential the request needs is not set",
        "set the named variables in the server environment (list_platforms names them); never paste values in chat",
    ),
    "E_SECRET_IN_ENV": Code(
        "a credential value was passed in env",
        "forward credentials by name with secret_env=['<VARIABLE>'] instead of putting values in env",
    ),
    "E_POLICY": Code(
        "the job policy refuses what the job asks of the host or of the server's credentials",
        "drop the refused option or secret_env name; list_platforms(platform=...) shows the policy and its settings",
    ),
    "E_IDEMPOTENCY_CONFLICT": Code(
        "an idempotency_key was reused for a different request",
        "use a new idempotency_key, or repeat the original request exactly",
    ),
    "E_WORKFLOW_INVALID": Code(
        "a workflow's steps do not form a valid plan (unknown dependency, cycle, bad reference, too many "
        "matrix combinations, or a step's submit_job arguments)",
        "fix the step the message names; submit_workflow(dry_run=True) checks the whole workflow without launching",
    ),
    "E_FLAT_SPEC_KEY": Code(
        "a spec override uses a dotted key inside a nested mapping",
        "write the override either fully nested or fully dotted",
    ),
    "E_HTTP_AUTH_REQUIRED": Code(
        "tao-mcp --http was started without authentication",
        "set TAO_MCP_HTTP_TOKENS_FILE or TAO_MCP_OAUTH_ISSUER (or --no-auth on a loopback host)",
    ),
    "E_HTTP_UNSAFE_BIND": Code(
        "the HTTP bind address is not safe as configured",
        "bind a loopback host, or pass --allowed-hosts with the names clients use",
    ),
    "E_INTERNAL": Code(
        "the server failed unexpectedly (a bug; the details are in the server log)",
        "retry once; if it fails the same way, report it to the server's operator",
    ),
    "E_CONFIRM_REQUIRED": Code(
        "the launch needs the user's confirmation of its review first (an AutoML run launches many GPU jobs)",
        "show the review to the user, then call again with plan_id=<the plan_id of the review>",
    ),
    "E_AUTOML_NOT_INSTALLED": Code(
        "the AutoML route needs the optional AutoML engine, which is not installed on the server",
        "pip install 'tao-mcp[automl]' and restart the server (or pass automl_policy='off' for one plain run)",
    ),
    "E_AUTOML_NOT_CAPABLE": Code(
        "the model action cannot be tuned by AutoML (AutoML disabled or blocked, or no train schema is packaged)",
        "pick a model list_models(scope='automl') shows, or run one plain job with submit_job",
    ),
    "E_AUTOML_NO_METRIC": Code(
        "AutoML stopped: three recommendations in a row finished without a readable validation metric",
        "check the metric name against what the job writes (status.json kpi / the job log: job_logs(job_id)), "
        "then start a new run with the right metric",
    ),
    "E_AUTOML_FAILED": Code(
        "the AutoML run ended with an error before its budget was used",
        "read automl_status(run_id) and failure_analysis(job_id) of its last recommendation",
    ),
    "E_UNKNOWN_AUTOML_RUN": Code("no AutoML run with this id is known", "use a run_id from list_automl_runs"),
    # ---- names the server does not know ----
    "E_UNKNOWN_JOB": Code("no job with this id is known", "use a job_id from submit_job or list_jobs"),
    "E_UNKNOWN_WORKFLOW": Code(
        "no workflow with this id is known", "use a workflow_id from submit_workflow or list_workflows"
    ),
    "E_UNKNOWN_PLAN": Code(
        "no dry-run plan with this id is known", "dry run again (dry_run=True) and use the plan_id it returns"
    ),
    "E_PLAN_EXPIRED": Code(
        "the dry-run plan is older than TAO_MCP_PLAN_TTL_S and is no longer launched",
        "dry run again, show the new plan to the user and submit its plan_id once confirmed",
    ),
    "E_PLAN_CHANGED": Code(
        "the dry-run plan no longer renders the same (settings, skill bank or server changed since)",
        "dry run again, show the new plan to the user and submit its plan_id once confirmed",
    ),
    "E_UNKNOWN_PLATFORM": Code("no platform has this name", "use a name list_platforms shows"),
    "E_PLATFORM_NOT_AVAILABLE": Code(
        "the platform has no driver here or is not configured", "use a platform list_platforms shows as ready"
    ),
    "E_UNKNOWN_MODEL": Code("no TAO model matches this name", "use a model list_models shows"),
    "E_AMBIGUOUS_MODEL": Code("the model name matches several models", "pass the skill directory name exactly"),
    "E_UNKNOWN_ACTION": Code("the model has no such action", "use an action list_models shows for the model"),
    "E_BACKEND_UNSUPPORTED": Code(
        "the model has no implementation backend of this name", "omit backend (or pass backend='auto')"
    ),
    "E_NO_IMAGE": Code("no container image is declared for the model action", "pass image=<uri> to submit_job"),
    "E_BAD_SKILL_BANK": Code(
        "a skill bank file cannot be read or parsed", "fix or remove the file, or point TAO_SKILL_BANK_PATH elsewhere"
    ),
    "E_GPU_LAYOUT": Code(
        "the GPUs asked for do not fit the platform's nodes",
        "ask for at most the GPUs of one node per node (list_platforms shows the platform's settings), or more nodes",
    ),
    "E_NOT_SUPPORTED": Code(
        "the platform does not offer this operation", "use job_status, job_logs and failure_analysis"
    ),
    # ---- backends ----
    "E_BACKEND_UNREACHABLE": Code(
        "the backend could not be reached (network, timeout, 5xx); never a job failure",
        "check the platform with list_platforms(platform=...) and retry",
    ),
    "E_BACKEND_REJECTED": Code(
        "the backend answered and refused the request", "correct the request as the backend's message says"
    ),
    "E_SSH_AUTH": Code(
        "the SLURM login node refused the SSH login", "check SLURM_USER and SSH_KEY_PATH / SSH_AUTH_SOCK"
    ),
    "E_SSH_HOSTKEY": Code(
        "the SLURM login node's host key cannot be checked or does not match",
        "verify the host key with the cluster admins and fix the known_hosts file",
    ),
    "E_HOST_KEY_CHANGED": Code(
        "the SLURM login node's host key differs from the one trusted before; nothing was sent",
        "verify the new key with the cluster admins, then remove the old entry from the known_hosts file named",
    ),
    "E_SLURM_STAGING": Code(
        "the job files could not be written on the cluster", "set SLURM_BASE_RESULTS_DIR to a writable directory"
    ),
    "E_LEPTON_AUTH": Code("Lepton refused LEPTON_AUTH_TOKEN", "set LEPTON_AUTH_TOKEN to a valid workspace token"),
    "E_BREV_AUTH": Code(
        "the brev CLI is not logged in or its token was refused", "set BREV_API_TOKEN to a fresh token"
    ),
    "E_BREV_CLI_MISSING": Code("the brev CLI is not on the server's PATH", "install brev or set BREV_CLI to its path"),
    "E_BREV_NO_INSTANCE": Code("no Brev instance has this name", "use a name list_instances shows"),
    "E_BREV_INSTANCE_NOT_READY": Code(
        "the Brev instance did not become ready in time; nothing was launched",
        "submit again with options={'instance': ...} once list_instances shows it RUNNING",
    ),
    # ---- storage (list_path, the runner's transfers) ----
    "E_NOT_FOUND": Code("nothing exists at this path", "check the path with list_path on its parent folder"),
    "E_NO_SUCH_BUCKET": Code("the S3 bucket does not exist", "check the bucket name"),
    "E_ACCESS_DENIED": Code(
        "the storage (or NGC / Hugging Face) refused access",
        "check the credentials (NGC_KEY, HF_TOKEN) and the bucket, folder or model permissions",
    ),
    "E_PATH_NOT_ALLOWED": Code(
        "the path is outside the folders the server exposes", "use a path under TAO_MCP_FILE_ROOTS"
    ),
    # ---- the in-container runner (job log) ----
    "E_INPUT_NOT_FOUND": Code("a declared input does not exist", "check the URI with list_path", runner=True),
    "E_DOWNLOAD_FAILED": Code("an input download failed", "check the free space in the container and retry", True),
    "E_UPLOAD_FAILED": Code("a results upload failed", "check the bucket, the credentials and the network", True),
    "E_S3_ERROR": Code("an S3 request failed in the container", "check the URI and S3_ENDPOINT_URL", True),
    "E_UNSAFE_PATH": Code("an object name would escape its destination folder", "rename the object", True),
    "E_UNSAFE_ARCHIVE": Code(
        "an archive member would land outside the extraction folder, or is a device or fifo",
        "repack the archive with relative paths, no links leaving it and no special files",
        True,
    ),
    "E_BAD_ARCHIVE": Code("an input archive cannot be read", "check the archive", True),
    "E_EXTRACT_CONFLICT": Code(
        "an archive has a file where the destination folder has a folder, or the reverse",
        "extract into a new folder, or remove the conflicting path",
        True,
    ),
    "E_RESULTS_DIR": Code("the results folder cannot be created in the container", "check the results mount", True),
    "E_BAD_JOB": Code("the runner's job description is missing or unreadable", "rebuild the job with tao-mcp", True),
    "E_NO_PYTHON": Code("the image has no usable Python (3.8+) for the runner", "use an image with Python 3.8+", True),
    "E_RUNNER_FAILED": Code(
        "the runner itself failed unexpectedly", "report the job log's traceback; resubmitting may help", True
    ),
}


class TaoError(Exception):
    """An anticipated failure with a stable code, a cause and the fix the agent should apply.

    The tool layer turns it into a coded tool error after redaction; nothing else is needed to report it.
    Without `fix`, the catalogue's default fix for the code is used.
    """

    def __init__(self, code: str, cause: str, fix: str | None = None) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"unknown error code {code!r}: add it to CATALOGUE in tao_mcp/errors.py")
        self.code = code
        self.cause = cause.rstrip(".")
        self.fix = (fix or CATALOGUE[code].fix).rstrip(".")
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.code}: {self.cause}. Fix: {self.fix}."


class BackendUnreachable(TaoError):
    """A transport failure (SSH drop, timeout, 5xx). Never a job state: callers keep the last known status.

    `sent` is False when the driver knows the request never left (the connection could not be made, or an earlier
    step of the launch failed): a launch that failed so launched nothing. None: it may have been sent.
    """

    def __init__(self, platform: str, cause: str, fix: str | None = None, *, sent: bool | None = None) -> None:
        self.platform = platform
        self.sent = sent
        super().__init__(
            "E_BACKEND_UNREACHABLE",
            f"{platform} backend unreachable: {cause}",
            fix or f"check the {platform} settings with list_platforms(platform='{platform}') and retry",
        )


class BackendRejected(TaoError):
    """The backend answered and refused the request (bad partition, quota, invalid option)."""

    def __init__(self, platform: str, cause: str, fix: str) -> None:
        self.platform = platform
        super().__init__("E_BACKEND_REJECTED", f"{platform} refused the request: {cause}", fix)


def catalogue_markdown() -> str:
    """docs/errors.md: the catalogue as a table (a unit test keeps the file in sync)."""
    rows = [
        "# Error codes",
        "",
        "Every anticipated failure reaches the agent as `E_CODE: cause. Fix: what to do.` (a tool error with",
        "`isError` set). Codes marked *job log* are printed by the in-container runner into the job's log, where",
        "job_logs and failure_analysis find them. Generated from `tao_mcp/errors.py`:",
        "`python -m tao_mcp.errors > docs/errors.md`.",
        "",
        "| code | meaning | default fix | where |",
        "| --- | --- | --- | --- |",
    ]
    for name, code in CATALOGUE.items():
        where = "job log" if code.runner else "tool result"
        rows.append(f"| `{name}` | {code.meaning} | {code.fix} | {where} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
