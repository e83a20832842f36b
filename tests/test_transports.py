"""The real entry point over streamable HTTP (`tao-mcp --http`), driven by the SDK's HTTP client."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp.client import Client

from tests.http_server import http_server

pytestmark = pytest.mark.anyio


async def test_streamable_http_serves_the_same_tools(base_env: dict[str, str], tmp_path: Path) -> None:
    # --no-auth on loopback: the local-tool mode (authenticated HTTP is tests/test_http_auth.py).
    async with http_server(base_env, tmp_path / "server.log", "--no-auth") as url:
        async with Client(url) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            result = await c.call_tool("list_platforms", {"platform": "k8s"})
        # Without a key, DNS-rebinding protection still refuses a page served under another name.
        foreign = httpx2.post(url, json={}, headers={"host": "evil.example", "content-type": "application/json"})
        assert foreign.status_code == 421
    assert {"submit_job", "wait_for_job", "job_logs"} <= names
    assert result.structured_content["platform"]["name"] == "kubernetes"
    assert "without authentication (--no-auth)" in (tmp_path / "server.log").read_text()
