"""Bad arguments are coded: `E_BAD_INPUT: <argument>: <problem>. Fix: <allowed>`, no pydantic URL, no SDK prefix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp.client import Client

from tao_mcp.server import build_server

pytestmark = pytest.mark.anyio

CODED = re.compile(r"^E_[A-Z0-9_]+: .+ Fix: .+", re.S)

# tool, arguments, the argument named, text the fix must contain
BAD_CALLS = [
    ("submit_job", {"platform": "docker", "command": "true", "partiton": "gpu"}, "partiton", "did you mean partition"),
    ("wait_for_job", {"job_id": "j", "timeout_s": 500}, "timeout_s", "from 1 to 50"),
    ("list_jobs", {"status": "Done"}, "status", "Pending, Running"),
    ("job_logs", {"job_id": "j", "tail": 0}, "tail", "from 1 to"),
    ("submit_job", {"platform": "docker", "command": "true", "idempotency_key": "k" * 500}, "idempotency_key", "128"),
    ("job_status", {}, "job_id", "pass job_id"),
    ("list_jobs", {"limit": "many"}, "limit", "from 1 to 200"),
    ("submit_job", {"platform": "docker", "command": "true", "gpu_count": -1}, "gpu_count", ">= 0"),
    ("list_path", {"uri": ["s3://a/"]}, "uri", "string"),
    ("list_jobs", {"cursor": "garbage"}, "cursor", "omit cursor"),
]


@pytest.mark.parametrize(("tool", "args", "argument", "fix"), BAD_CALLS, ids=[f"{c[0]}-{c[2]}" for c in BAD_CALLS])
async def test_bad_arguments_are_coded(
    base_env: dict[str, str], tool: str, args: dict[str, object], argument: str, fix: str
) -> None:
    async with Client(build_server(base_env)) as c:
        result = await c.call_tool(tool, args)
    text = result.content[0].text
    assert result.is_error, text
    assert CODED.match(text) and text.startswith(f"E_BAD_INPUT: {argument}"), text
    assert fix in text.split(" Fix: ", 1)[1], text
    assert "pydantic" not in text and "Error executing" not in text, text


async def test_a_tool_error_starts_with_its_code(base_env: dict[str, str]) -> None:
    async with Client(build_server(base_env)) as c:
        unknown = await c.call_tool("job_status", {"job_id": "no-such-job"})
        no_tool = await c.call_tool("no_such_tool", {})
    assert unknown.is_error and unknown.content[0].text.startswith("E_UNKNOWN_JOB: "), unknown.content[0].text
    assert no_tool.is_error and no_tool.content[0].text.startswith("E_BAD_INPUT: name: "), no_tool.content[0].text


@pytest.mark.parametrize("text", ["{{{ not yaml", "clusters: 7\n", "apiVersion: v1\nkind: Config\n", ""])
async def test_a_malformed_kubeconfig_is_a_bad_setting_at_submit(
    base_env: dict[str, str], tmp_path: Path, text: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text + "\n# token: kubeconfig-canary-value\n")
    # The first probe imports the kubernetes client (seconds on a busy machine): the bound is not under test here.
    env = {**base_env, "KUBECONFIG": str(kubeconfig), "TAO_MCP_PROBE_TIMEOUT_S": "60"}
    async with Client(build_server(env)) as c:
        result = await c.call_tool("submit_job", {"platform": "kubernetes", "command": "true"})
        jobs = (await c.call_tool("list_jobs", {})).structured_content["jobs"]
    message = result.content[0].text
    assert result.is_error and message.startswith("E_BAD_SETTING: the Kubernetes configuration"), message
    assert "kubeconfig-canary-value" not in message
    assert all(job["status"] == "Error" for job in jobs), jobs  # nothing left open, no "launch outcome unknown"
