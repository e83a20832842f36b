"""Start the real entry point (`python -m tao_mcp --http ...`) on a free port and connect MCP clients to it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.helpers import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def http_server(env: dict[str, str], log_path: Path, *args: str, port: int | None = None) -> AsyncIterator[str]:
    """The server listening on 127.0.0.1:<port>; yields the /mcp URL. Its output goes to `log_path`."""
    port = port or free_port()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tao_mcp", "--http", "--port", str(port), *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with anyio.fail_after(30):
                while True:  # poll until the server listens (deadline above)
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            break
                    except OSError:
                        assert server.poll() is None, log_path.read_text()
                        await anyio.sleep(0.2)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.terminate()
            server.wait(timeout=10)


def bearer_client(url: str, token: str | None, **kw: Any) -> Client:
    """An MCP client sending `Authorization: Bearer <token>` (none when token is None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, **kw)
