"""The Lepton workspace REST API over `requests`: one session per worker thread, retries for reads only.

Transport failures, timeouts, 429 and 5xx answers raise BackendUnreachable (never a job state); 401/403 are a
settings problem (E_LEPTON_AUTH); 404 and 409 come back as NotFound / Conflict for the caller to interpret.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio

from tao_mcp.drivers.base import clip_text, never_connected
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError

log = logging.getLogger(__name__)

PLATFORM = "lepton"
GATEWAY = "https://gateway.dgxc-lepton.nvidia.com"
GATEWAY_BASE = GATEWAY + "/api/v2/workspaces/{workspace_id}"
READ_ATTEMPTS = 4
MAX_RETRY_AFTER_S = 10.0


class NotFound(Exception):
    pass


class Conflict(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_text(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return clip_text((resp.text or "").strip(), 300)
    if isinstance(body, Mapping):
        code, message = body.get("code"), body.get("message")
        return clip_text(": ".join(str(x) for x in (code, message) if x), 500) or clip_text(json.dumps(body), 300)
    return clip_text(str(body), 300)


def reject_fix(path: str) -> str:
    if path.startswith("/usersecrets"):
        return "check the secret names in secret_env; the workspace refused to store them"
    if path.startswith("/jobs"):
        return (
            "fix what Lepton names above (image, resource_shape, node_group, mounts, image_pull_secrets) and "
            "submit_job again; list_platforms(platform='lepton') shows the options"
        )
    return "check the Lepton settings and options and retry"


class LeptonClient:
    """Calls under one workspace base URL with a bearer token."""

    def __init__(self, base: str, token: str, timeout: float) -> None:
        self.base = base
        self.token = token
        self.timeout = timeout
        self.gateway = base.startswith(GATEWAY)
        self._local = threading.local()
        self._sessions: list[Any] = []  # one requests.Session per worker thread, closed by close()
        self._sessions_lock = threading.Lock()

    def session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            session.headers["Accept"] = "application/json"
            if self.gateway:
                session.headers["origin"] = GATEWAY
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def call(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, read: bool) -> Any:
        """Blocking; run in a worker thread. Reads retry 429 (Retry-After) and 5xx with backoff; writes never."""
        import requests

        url = self.base + path
        attempts = READ_ATTEMPTS if read else 1
        what = f"{method} {path}"
        unconnected = False  # the last attempt could not even connect: the request never left
        for attempt in range(attempts):
            delay = min(0.5 * 2**attempt, 4.0)
            try:
                resp = self.session().request(method, url, params=params, json=body, timeout=self.timeout)
            except requests.Timeout as exc:
                problem, unconnected = f"{what} timed out after {self.timeout:g}s", never_connected(exc)
            except requests.RequestException as exc:
                problem, unconnected = f"{what} failed: {type(exc).__name__}", never_connected(exc)
            else:
                unconnected = False
                code = resp.status_code
                if code < 300:
                    if not resp.content:
                        return None
                    try:
                        return resp.json()
                    except ValueError:
                        problem = f"{what} answered {code} with a body that is not JSON"
                        raise BackendUnreachable(PLATFORM, problem) from None
                if code == 429 or code >= 500:
                    problem = f"{what} answered HTTP {code} ({error_text(resp)})"
                    if code == 429:
                        retry_after = resp.headers.get("Retry-After", "")
                        try:
                            delay = min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
                        except ValueError:
                            delay = 1.0
                elif code in (401, 403):
                    raise TaoError(
                        "E_LEPTON_AUTH",
                        f"Lepton refused LEPTON_AUTH_TOKEN (HTTP {code} on {what}: {error_text(resp)})",
                        "set LEPTON_AUTH_TOKEN to a valid token of the workspace named by LEPTON_WORKSPACE_ID / "
                        "LEPTON_WORKSPACE_URL (Lepton console: Settings > Tokens), restart the server, and check with "
                        "list_platforms(platform='lepton')",
                    )
                elif code == 404:
                    raise NotFound(error_text(resp))
                elif code == 409:
                    raise Conflict(error_text(resp))
                else:
                    raise BackendRejected(PLATFORM, f"{what}: HTTP {code}: {error_text(resp)}", reject_fix(path))
            if attempt + 1 < attempts:
                log.info("lepton: %s; retrying in %.1fs", problem, delay)
                time.sleep(delay)
        fix = None
        if method == "POST" and path == "/jobs" and not unconnected:
            fix = "do not resubmit: whether the job was created is unknown; it is reconciled by its name shortly"
        elif not read:
            fix = f"retry shortly; check the {PLATFORM} settings with list_platforms(platform='lepton') if it persists"
        raise BackendUnreachable(PLATFORM, problem, fix, sent=False if unconnected else None)

    async def http(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None, read: bool = True
    ) -> Any:
        return await anyio.to_thread.run_sync(
            lambda: self.call(method, path, params, body, read), abandon_on_cancel=True
        )

    async def get(self, path: str, **params: Any) -> Any:
        return await self.http("GET", path, params=params or None)

    async def workspace_get(self, path: str, *, read: bool = True, **params: Any) -> Any:
        """A workspace-level read: 404 means the settings name no workspace (or a wrong base URL).
        read=False: one attempt (no retry of 5xx/429)."""
        try:
            return await self.http("GET", path, params=params or None, read=read)
        except NotFound as exc:
            raise TaoError(
                "E_BAD_SETTING",
                f"GET {path} answered 404 ({exc}): LEPTON_WORKSPACE_URL / LEPTON_WORKSPACE_ID name no workspace",
                "set LEPTON_WORKSPACE_ID to the workspace id, or LEPTON_WORKSPACE_URL to the full base "
                "https://<host>/api/v2/workspaces/<id>, and restart the server",
            ) from None

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
