"""Coded, actionable errors: every anticipated failure reaches the agent as `E_CODE: cause. Fix: ...`."""

from __future__ import annotations


class TaoError(Exception):
    """An anticipated failure with a stable code, a cause and the fix the agent should apply.

    The tool layer turns it into the SDK's ToolError after redaction; nothing else is needed to report it.
    """

    def __init__(self, code: str, cause: str, fix: str) -> None:
        self.code = code
        self.cause = cause.rstrip(".")
        self.fix = fix.rstrip(".")
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.code}: {self.cause}. Fix: {self.fix}."


class BackendUnreachable(TaoError):
    """A transport failure (SSH drop, timeout, 5xx). Never a job state: callers keep the last known status."""

    def __init__(self, platform: str, cause: str, fix: str | None = None) -> None:
        self.platform = platform
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
