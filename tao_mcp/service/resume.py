"""submit_job(resume_from=<job id>): where the new job finds the checkpoints of the earlier one.

The earlier job's results location (its record) goes to the runner as TAO_RESUME_FROM; the runner picks the
checkpoint with the highest epoch there and sets the action's resume key (entrypoint/runner.py, auto-resume). A
location on a platform's own file system (lustre://, file://) is only readable by jobs of that platform.
"""

from __future__ import annotations

from tao_mcp.errors import TaoError
from tao_mcp.service.store import JobRecord

PLATFORM_LOCAL = ("lustre://", "file://")


def resume_location(earlier: JobRecord, platform: str) -> str:
    """The results location a job on `platform` resumes from; E_BAD_INPUT when it has none it can read."""
    location = earlier.results_location
    if not location:
        raise TaoError(
            "E_BAD_INPUT",
            f"job {earlier.job_id} has no results location to resume from (its results stayed in its container)",
            "resume from a job whose results persisted (a platform results folder or results_uri=s3://...)",
        )
    if location.startswith(PLATFORM_LOCAL) and earlier.platform != platform:
        raise TaoError(
            "E_BAD_INPUT",
            f"job {earlier.job_id} kept its results on {earlier.platform} ({location}), which a {platform} job "
            "cannot read",
            f"submit to {earlier.platform}, or copy the checkpoint to S3 and pass it in the spec",
        )
    return location
