"""Driving a real stdio server (`python -m tao_mcp`) the way an agent's host does, including killing it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tao_mcp.service.crashpoints import ENV_DELAY, ENV_POINT
from tests.helpers import REPO

CRASH_LINE = "crash point {point} reached: SIGKILL"


def stdio_server(env: dict[str, str], errlog: Any) -> Client:
    """A fresh server process (our code on its path) on the given state directory."""
    env = {**env, "PYTHONPATH": f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "tao_mcp"], env=env, cwd=str(REPO))
    return Client(stdio_client(params, errlog=errlog), mode="legacy")


class ServerLog:
    """Numbered stderr files of the successive server processes of one test (shown when a test fails)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[Path] = []

    def next(self) -> Path:
        path = self.directory / f"server{len(self.files) + 1}.stderr"
        self.files.append(path)
        return path

    def tail(self, lines: int = 30) -> str:
        out = []
        for path in self.files:
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


async def call_until_killed(
    env: dict[str, str], logs: ServerLog, point: str, delay_s: float, steps: list[tuple[str, dict[str, Any]]]
) -> list[Any]:
    """Run tool calls on a server armed to SIGKILL itself at `point` (after delay_s from there).

    Returns the results the client got before the connection dropped (a kill landing after the last answer
    is waited for). Fails unless the process really died at that point.
    """
    log_path = logs.next()
    armed = {**env, ENV_POINT: point, ENV_DELAY: f"{delay_s:.3f}"}
    results: list[Any] = []
    with open(log_path, "w") as errlog:
        try:
            async with stdio_server(armed, errlog) as c:
                for tool, args in steps:
                    with anyio.fail_after(180):
                        results.append(await c.call_tool(tool, args))
                # the armed kill may land after the last answer: wait for it (the session then drops)
                with anyio.fail_after(delay_s + 30):
                    while CRASH_LINE.format(point=point) not in log_path.read_text(errors="replace"):
                        await anyio.sleep(0.1)
                    while True:
                        await c.send_ping()
                        await anyio.sleep(0.1)
        except Exception:  # the SDK reports the dropped stdio session as an error group / MCPError
            pass
    text = log_path.read_text(errors="replace")
    if CRASH_LINE.format(point=point) not in text:
        pytest.fail(f"the server was not killed at {point}:\n{logs.tail()}")
    return results
