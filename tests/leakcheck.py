"""One secret-leak scenario every platform runs: a careless job prints its secrets in every form
(fixtures/leaks.py); every tool is called on it over stdio like an agent would; every result (text and
structured), every notification (progress, log, anything else), every store row (the sqlite file, read
directly) and the server's stderr must be free of every form of every canary and of the PEM key's body."""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from fixtures import leaks
from tao_mcp import cursor as cursor_codec
from tests.helpers import REPO, structured

# A forwarded name no name rule knows: only secret_env says it is a secret.
PLAIN_NAME = "BUILD_NOTE"


def leak_env(env: dict[str, str], canaries: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The server environment with one more canary under a plain-looking name (forwardable by policy)."""
    canaries = {**canaries, PLAIN_NAME: f"plain-canary-{uuid.uuid4().hex[:12]}"}
    forwardable = ",".join(["NGC_KEY", "HF_TOKEN", "WANDB_API_KEY", "ACCESS_KEY", "SECRET_KEY", PLAIN_NAME])
    # A fresh stdio server imports a platform's client on its first probe: give a loaded machine time for it.
    probe = {"TAO_MCP_PROBE_TIMEOUT_S": "30"}
    return {**env, **canaries, "TAO_MCP_FORWARDABLE_SECRETS": forwardable, **probe}, canaries


class Recorder:
    """Everything the client received: results, progress messages, notifications of any kind."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def result(self, result: Any) -> dict[str, Any] | None:
        self.texts.extend(x.text for x in result.content if hasattr(x, "text"))
        self.texts.append(json.dumps(result.structured_content))
        return None if result.is_error else structured(result)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.texts.append(f"progress {progress}: {message}")

    async def message(self, message: Any) -> None:
        dump = getattr(message, "model_dump_json", None)
        self.texts.append(dump() if dump else repr(message))

    async def log(self, params: Any) -> None:
        self.texts.append(params.model_dump_json())

    def text(self) -> str:
        return "\n".join(self.texts)


def client(env: dict[str, str], errlog: Any, seen: Recorder) -> Client:
    params = StdioServerParameters(command=sys.executable, args=["-m", "tao_mcp"], env=env, cwd=str(REPO))
    return Client(
        stdio_client(params, errlog=errlog),
        mode="legacy",
        message_handler=seen.message,
        logging_callback=seen.log,
    )


async def run_leaky_job(
    env: dict[str, str],
    canaries: dict[str, str],
    tmp_path: Path,
    submit: dict[str, Any],
    *,
    pem_seed: str,
    expect_printed: bool = True,
    while_waiting: Callable[[], Awaitable[None]] | None = None,
    budget_s: float = 180,
) -> str:
    """Submit `submit` (a job printing the canaries), drive every tool, assert nothing leaked anywhere.
    Returns everything the client received (redacted), for the caller's own checks."""
    seen = Recorder()
    err_path = tmp_path / f"stderr-{uuid.uuid4().hex[:6]}.log"
    with open(err_path, "w") as err:
        async with client(env, err, seen) as c:
            seen.result(await c.call_tool("submit_job", {**submit, "dry_run": True}))
            sub = seen.result(await c.call_tool("submit_job", submit))
            assert sub is not None, seen.texts[-2]
            job_id = sub["job_id"]
            if while_waiting is not None:
                await while_waiting()
            with anyio.fail_after(budget_s):
                while True:
                    wait = {"job_id": job_id, "timeout_s": 20}
                    done = seen.result(await c.call_tool("wait_for_job", wait, progress_callback=seen.progress))
                    if done is not None and done["done"]:
                        break
            page = seen.result(await c.call_tool("job_logs", {"job_id": job_id, "tail": 2000}))
            assert page is not None
            if expect_printed:  # the job really printed them; the server masked them on the way out
                assert "leak-job done" in page["lines"] or "fake-lepton: done" in page["lines"], page["lines"][-5:]
                assert any(line.startswith("plain [REDACTED]") for line in page["lines"]), page["lines"][:5]
            first_page = cursor_codec.encode("log", job_id, "after", 0, 0)  # the first page: from position 0
            seen.result(await c.call_tool("job_logs", {"job_id": job_id, "cursor": first_page, "tail": 2000}))
            for needle in ("[REDACTED]", "b64", "BEGIN", "p" * 50, *(v[:6] for v in canaries.values())):
                seen.result(await c.call_tool("job_logs", {"job_id": job_id, "grep": needle, "tail": 2000}))
            for tool in ("job_status", "failure_analysis", "cancel_job"):
                seen.result(await c.call_tool(tool, {"job_id": job_id}))
            seen.result(await c.call_tool("list_jobs", {}))
            seen.result(await c.call_tool("list_platforms", {"platform": submit["platform"]}))
            # Errors that echo input: a credential value in env, a bad cursor made of one.
            seen.result(await c.call_tool("submit_job", {**submit, "env": {"MY_VAR": canaries["NGC_KEY"]}}))
            seen.result(await c.call_tool("job_logs", {"job_id": job_id, "cursor": canaries["HF_TOKEN"]}))
    leaks.assert_absent(seen.text(), canaries, "results and notifications", pem_seed)
    leaks.assert_absent(err_path.read_text(), canaries, "server stderr", pem_seed)
    db = sqlite3.connect(Path(env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    leaks.assert_absent("\n".join(db.iterdump()), canaries, "the job store", pem_seed)
    db.close()
    assert any("[REDACTED]" in t for t in seen.texts)
    return seen.text()
