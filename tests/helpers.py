"""Helpers the tests share (fixtures live in conftest.py): dev-backend settings, driving the MCP server the way an
agent does, waiting with deadlines, and the checks every platform's scenarios make."""

from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from dotenv import dotenv_values
from mcp import types

from tao_mcp.drivers.base import LaunchRequest

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / ".dev"

# Variables of the developer's own environment that must not leak into a test server.
ISOLATED_PREFIXES = ("SLURM_", "SSH_", "LEPTON_", "BREV_", "TAO_", "S3_", "AWS_", "KUBECONFIG", "DOCKER_HOST")
ISOLATED_NAMES = {"ACCESS_KEY", "SECRET_KEY", "NGC_KEY", "HF_TOKEN", "CLOUD_REGION"}


def dev_settings(name: str, start: str) -> dict[str, str]:
    """Settings a repo dev script wrote. A backend that should be up and is not fails the test (never skips)."""
    path = DEV / f"{name}.env"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `{start}` first (README: Development)")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_PREFIXES) and k not in ISOLATED_NAMES}


def launch_request(job_id: str | None = None, command: str = "echo", **fields: Any) -> LaunchRequest:
    """A minimal CPU-only LaunchRequest for driver-level tests."""
    job_id = job_id or uuid.uuid4().hex[:12]
    defaults: dict[str, Any] = {
        "image": None,
        "gpu_count": 0,
        "num_nodes": 1,
        "env": {"TAO_JOB_ID": job_id},
        "secret_env": {},
        "time_limit_minutes": 5,
        "options": {},
    }
    return LaunchRequest(job_id=job_id, backend_name=f"tao-{job_id}", command=command, **{**defaults, **fields})


def structured(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool call (fails the test with the error text otherwise)."""
    if result.is_error:
        pytest.fail(f"tool error: {result.content[0].text}")
    return result.structured_content


# ---- driving the MCP server the way an agent does ----


def mcp_client(env: dict[str, str], mode: str = "legacy") -> Any:
    """An in-process client: legacy = initialize handshake + JSON-RPC streams; modern = stateless dispatch."""
    from mcp.client import Client

    from tao_mcp.server import build_server

    return Client(build_server(env), mode="legacy") if mode == "legacy" else Client(build_server(env))


async def call(c: Any, tool: str, **args: Any) -> dict[str, Any]:
    return structured(await c.call_tool(tool, args))


async def plan_files(c: Any, dry: dict[str, Any]) -> dict[str, str]:
    """Every file of a dry run in full, read the way an agent does: the resources its files[] list names."""
    files = {}
    for listed in dry["files"]:
        contents = (await c.read_resource(listed["uri"])).contents
        files[listed["path"]] = contents[0].text
        assert len(files[listed["path"]].encode()) == listed["size"], listed
    return files


async def call_error(c: Any, tool: str, **args: Any) -> str:
    """The coded error text of a call that must fail: it starts with its code and names a fix."""
    result = await c.call_tool(tool, args)
    assert result.is_error, f"expected an error, got {result.structured_content}"
    text = result.content[0].text
    assert re.match(r"^E_[A-Z0-9_]+: .+ Fix: .+", text, re.S), f"not a coded error: {text!r}"
    return text


async def wait_done(
    c: Any, job_id: str, budget_s: float = 120, until: str = "terminal", step_s: int = 20
) -> dict[str, Any]:
    """Call wait_for_job again while done is false, within a deadline."""
    with anyio.fail_after(budget_s):
        while True:
            result = await call(c, "wait_for_job", job_id=job_id, timeout_s=step_s, until=until)
            if result["done"]:
                return result


async def wait_with_progress(
    c: Any, job_id: str, budget_s: float = 120, step_s: int = 30
) -> tuple[dict[str, Any], list[list[tuple[float, str | None]]]]:
    """wait_for_job to the end, collecting the progress notifications (value, message) of each call."""
    calls: list[list[tuple[float, str | None]]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        calls[-1].append((progress, message))

    with anyio.fail_after(budget_s):
        while True:
            calls.append([])
            r = await c.call_tool(
                "wait_for_job", {"job_id": job_id, "timeout_s": step_s}, progress_callback=on_progress
            )
            done = structured(r)
            if done["done"]:
                return done, calls


def assert_progress_increasing(calls: list[list[tuple[float, str | None]]]) -> None:
    """Progress was sent, and rises strictly within each wait_for_job call (each call is its own progress token)."""
    assert any(calls), "no progress notification was sent"
    for seen in calls:
        values = [p for p, _ in seen]
        assert all(b > a for a, b in itertools.pairwise(values)), values


async def wait_status(c: Any, job_id: str, predicate: Any, budget_s: float = 30) -> dict[str, Any]:
    """Poll job_status until predicate(status) holds, within a deadline."""
    with anyio.fail_after(budget_s):
        while True:
            status = await call(c, "job_status", job_id=job_id)
            if predicate(status):
                return status
            await anyio.sleep(0.3)


# A command that fails the way user code does: a Python traceback, then exit 3.
FAILING_COMMAND = "python3 -c 'import json; json.loads(\"{bad\")'; exit 3"


async def assert_program_error(
    c: Any, job_id: str, budget_s: float = 120, exit_code: int | None = 3, exception: str = "JSONDecodeError"
) -> dict[str, Any]:
    """The job ran FAILING_COMMAND: Error with exit code 3, and failure_analysis points at the traceback.
    (A platform that reports no exit code passes exit_code=None; a fake's traceback names its own exception.)"""
    done = await wait_done(c, job_id, budget_s)
    assert done["status"] == "Error" and done["exit_code"] == exit_code, done
    assert done["next"].startswith("failure_analysis")
    fa = await call(c, "failure_analysis", job_id=job_id)
    assert fa["category"] == "program_error" and fa["err_class"] == "ERR_PROGRAM", fa
    assert any(exception in e["text"] for e in fa["evidence"]), fa["evidence"]
    return fa


def stdio_client(env: dict[str, str], errlog: Any, seen: Transcript | None = None) -> Any:
    """A client of a real `python -m tao_mcp` process over stdio (its stderr goes to errlog); `seen` records every
    notification it receives."""
    import sys

    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp.client.stdio import stdio_client as sdk_stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "tao_mcp"], env=env, cwd=str(REPO))
    handlers = {"message_handler": seen.message, "logging_callback": seen.log} if seen else {}
    return Client(sdk_stdio_client(params, errlog=errlog), mode="legacy", **handlers)


class Transcript:
    """Everything a test got from the server: answers (texts and structured content), errors, progress messages and
    notifications of any kind, searched for canary values."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def record(self, result: Any) -> dict[str, Any] | None:
        """Record any answer; its structured content, or None for an error."""
        self.texts.extend(x.text for x in result.content if hasattr(x, "text"))
        self.texts.append(json.dumps(result.structured_content))
        return None if result.is_error else result.structured_content

    def keep(self, result: Any) -> dict[str, Any]:
        """Record an answer that must be a success."""
        self.record(result)
        return structured(result)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.texts.append(f"progress {progress}: {message}")

    async def message(self, message: Any) -> None:
        dump = getattr(message, "model_dump_json", None)
        self.texts.append(dump() if dump else repr(message))

    async def log(self, params: Any) -> None:
        self.texts.append(params.model_dump_json())

    def text(self) -> str:
        return "\n".join(self.texts)


def assert_no_canary(text: str, canaries: Mapping[str, str]) -> None:
    for name, value in canaries.items():
        assert value not in text, f"the value of {name} leaked"


class ResourceInbox:
    """The resource notifications a client received (its message_handler), and an event per arrival to wait on."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.list_changed = 0
        self.arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification):
            message = message.root if hasattr(message, "root") else message
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))
        elif isinstance(message, types.ResourceListChangedNotification):
            self.list_changed += 1
        else:
            return
        self.arrived.set()

    async def wait(self, ready: Any, deadline_s: float = 60) -> None:
        with anyio.fail_after(deadline_s):
            while not ready():
                self.arrived = anyio.Event()
                if ready():
                    return
                await self.arrived.wait()
