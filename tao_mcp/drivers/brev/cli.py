"""Running the `brev` CLI: stdin = /dev/null, a timeout per call, one re-login on 401/403, `ls --json` shapes.

Every call runs in its own process group so a timeout or a cancelled MCP call kills brev and the ssh it spawned.
A call that cannot be run, times out or is cut off raises BackendUnreachable; an expired or refused login raises
TaoError E_BREV_AUTH naming BREV_API_TOKEN.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

import anyio

from tao_mcp.drivers.brev.options import BrevSettings
from tao_mcp.errors import BackendUnreachable, TaoError

log = logging.getLogger(__name__)

PLATFORM = "brev"
MAX_OUTPUT = 8 * 1024 * 1024
_AUTH = re.compile(r"\b40[13]\b|unauthori[sz]ed|not logged in|token (?:is |has )?expired|invalid token", re.IGNORECASE)
# Instance statuses (brev-cli): RUNNING, STARTING, STOPPING, DEPLOYING, STOPPED, DELETING, FAILURE.
STARTING = frozenset({"DEPLOYING", "STARTING", "CREATING", "PROVISIONING"})


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str


@dataclass(frozen=True)
class Instance:
    name: str
    status: str
    id: str = ""
    build_status: str = ""
    shell_status: str = ""
    health_status: str = ""
    instance_type: str = ""
    gpu: str = ""

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "status": self.status,
            "build_status": self.build_status,
            "shell_status": self.shell_status,
            "health_status": self.health_status,
            "health": self.health_status,
            "instance_type": self.instance_type,
            "gpu": self.gpu,
        }


def parse_ls(text: str) -> dict[str, Instance]:
    """`brev ls --json`: `{"workspaces": [...]}` (v0.6.323+) or a bare array (older). Raises ValueError."""
    try:
        data = json.loads(text or "null")
    except ValueError:
        # a version notice or banner printed before the JSON: parse from the first line that opens it
        lines = (text or "").splitlines()
        start = next((i for i, line in enumerate(lines) if line.lstrip()[:1] in ("{", "[")), None)
        if start is None:
            raise
        data = json.loads("\n".join(lines[start:]))
    if isinstance(data, dict):
        rows = data.get("workspaces")
        if rows is None:
            rows = data.get("instances", [])
    elif isinstance(data, list):
        rows = data
    else:
        raise ValueError(f"unexpected JSON {type(data).__name__}")
    if not isinstance(rows, list):
        raise ValueError("workspaces is not a list")
    found: dict[str, Instance] = {}
    for row in rows:
        if not isinstance(row, dict) or not row.get("name"):
            continue

        def text_of(*keys: str, row: dict[str, Any] = row) -> str:
            for key in keys:
                value = row.get(key)
                if value not in (None, ""):
                    return str(value)
            return ""

        found[str(row["name"])] = Instance(
            name=str(row["name"]),
            status=text_of("status").upper(),
            id=text_of("id"),
            build_status=text_of("build_status", "buildStatus").upper(),
            shell_status=text_of("shell_status", "shellStatus").upper(),
            health_status=text_of("health_status", "healthStatus").upper(),
            instance_type=text_of("instance_type", "instanceType"),
            gpu=text_of("gpu"),
        )
    return found


def auth_error() -> TaoError:
    return TaoError(
        "E_BREV_AUTH",
        "the brev CLI is not logged in or its token was refused or expired (401/403)",
        "set BREV_API_TOKEN in the server environment (or ~/.config/tao/.env) to a fresh token from the Brev "
        "console (tokens expire in about an hour; tao-mcp logs in again with it by itself), or run "
        "`brev login` on the server host; check with list_platforms(platform='brev')",
    )


class BrevCLI:
    def __init__(self, settings: BrevSettings) -> None:
        self.env = settings.child_environment
        self.token = settings.token()
        self.timeout = settings.cli_timeout
        self.binary = shutil.which(settings.cli or "brev", path=self.env.get("PATH"))
        self._login_lock = anyio.Lock()
        self._login_generation = 0

    def _require_binary(self) -> str:
        if not self.binary:
            raise TaoError(
                "E_BREV_CLI_MISSING",
                "the brev CLI is not on the server's PATH",
                "install it (https://github.com/brevdev/brev-cli, e.g. `brew install brevdev/homebrew-brev/brev` or "
                "the install script) or set BREV_CLI to its absolute path, then restart the server",
            )
        return self.binary

    async def call(self, args: list[str], *, timeout: float | None = None, what: str | None = None) -> Result:
        """Run `brev ARGS`; on an authorization failure log in again with BREV_API_TOKEN and retry once."""
        generation = self._login_generation
        result = await self.spawn(args, timeout=timeout or self.timeout, what=what)
        if not self.is_auth_failure(result):
            return result
        if not self.token:
            raise auth_error()
        await self.login(generation)
        result = await self.spawn(args, timeout=timeout or self.timeout, what=what)
        if self.is_auth_failure(result):
            raise auth_error()
        return result

    @staticmethod
    def is_auth_failure(result: Result) -> bool:
        return result.rc != 0 and bool(_AUTH.search(result.err[-2000:]))

    async def login(self, seen_generation: int) -> None:
        async with self._login_lock:
            if self._login_generation != seen_generation:
                return  # another call logged in since this one failed
            assert self.token is not None
            log.info("brev: authorization refused; logging in again with BREV_API_TOKEN")
            result = await self.spawn(["login", "--token", self.token], timeout=self.timeout, what="brev login")
            if result.rc != 0:
                raise auth_error()
            self._login_generation += 1

    async def spawn(self, args: list[str], *, timeout: float, what: str | None = None) -> Result:
        binary = self._require_binary()
        label = what or f"brev {args[0]}"
        try:
            proc = await anyio.open_process(
                [binary, *args],
                stdin=subprocess.DEVNULL,  # hazard 1: brev reads instance names from a piped stdin
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendUnreachable(PLATFORM, f"cannot run {label}: {exc.strerror or exc}") from None
        out, err = bytearray(), bytearray()
        try:
            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_drain, proc.stdout, out)
                    tg.start_soon(_drain, proc.stderr, err)
                rc = await proc.wait()
        except TimeoutError:
            _kill_group(proc.pid)
            with anyio.CancelScope(shield=True):
                await proc.wait()
            raise BackendUnreachable(
                PLATFORM, f"{label} did not finish within {timeout:.0f} s (killed)", _timeout_fix()
            ) from None
        except BaseException:
            _kill_group(proc.pid)
            with anyio.CancelScope(shield=True):
                await proc.wait()
            raise
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await proc.aclose()
        return Result(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def ls(self, timeout: float | None = None) -> dict[str, Instance]:
        result = await self.call(["ls", "--json"], timeout=timeout, what="brev ls")
        if result.rc != 0:
            raise BackendUnreachable(PLATFORM, f"brev ls failed: {_tail(result.err or result.out)}")
        try:
            return parse_ls(result.out)
        except ValueError as exc:
            raise BackendUnreachable(PLATFORM, f"brev ls --json printed something unexpected ({exc})") from None


async def _drain(stream: Any, buffer: bytearray) -> None:
    if stream is None:
        return
    async for chunk in stream:
        room = MAX_OUTPUT - len(buffer)
        if room > 0:
            buffer += chunk[:room]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(text: str, limit: int = 400) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[-4:])[-limit:] or "no output"


def _timeout_fix() -> str:
    return (
        "the Brev API or the instance is slow or unreachable; retry shortly (the job itself is unaffected); "
        "BREV_CLI_TIMEOUT raises the per-call limit"
    )
