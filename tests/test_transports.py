"""The real entry point over streamable HTTP (`tao-mcp --http`), driven by the SDK's HTTP client."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from tests.conftest import REPO

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_streamable_http_serves_the_same_tools(base_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below, after the process ends
    server = subprocess.Popen(
        [sys.executable, "-m", "tao_mcp", "--http", "--port", str(port)],
        cwd=REPO,
        env=base_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(30):
            while True:  # poll until the server listens (deadline above)
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    assert server.poll() is None, (tmp_path / "server.log").read_text()
                    await anyio.sleep(0.2)
        async with Client(url) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            result = await c.call_tool("list_platforms", {"platform": "k8s"})
        assert {"submit_job", "wait_for_job", "job_logs"} <= names
        assert result.structured_content["platform"]["name"] == "kubernetes"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
