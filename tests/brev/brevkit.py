"""Helpers for the Brev tests: a server environment whose PATH starts with the fake `brev` (fixtures/brev)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from mcp.client import Client

from tests.helpers import REPO, call, mcp_client
from tests.helpers import wait_done as shared_wait_done

FAKE = REPO / "fixtures" / "brev"
TOKEN = "brev-tok-7f3a9c2e1d"  # what the fake accepts for `brev login --token`
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"


class FakeBrev:
    """The fake's state directory: switches (config.json), recorded calls, instance sandboxes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def configure(self, **switches: Any) -> None:
        path = self.root / "config.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(switches)
        path.write_text(json.dumps(current))

    def calls(self, verb: str | None = None) -> list[dict[str, Any]]:
        path = self.root / "calls.log"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r for r in rows if verb is None or r["argv"][:1] == [verb]]

    def job_dir(self, instance: str, job_id: str) -> Path:
        return self.root / "instances" / instance / "home" / ".tao-mcp" / "jobs" / job_id

    def container(self, instance: str, name: str) -> dict[str, Any]:
        return json.loads((self.root / "instances" / instance / "docker" / "containers" / f"{name}.json").read_text())

    def kill_everything(self) -> None:
        """Teardown: end every wrapper and container process a test left on the fake's instances."""
        pidfiles = list(self.root.glob("instances/*/home/.tao-mcp/jobs/*/wrapper.pid"))
        pids = [int(p.read_text().strip() or 0) for p in pidfiles]
        for path in self.root.glob("instances/*/docker/containers/*.json"):
            pids.append(int(json.loads(path.read_text()).get("pid") or 0))
        for pid in pids:
            if pid > 0:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)

    def instances(self) -> dict[str, Any]:
        path = self.root / "state.json"
        return json.loads(path.read_text())["instances"] if path.exists() else {}


def client(env: dict[str, str]) -> Any:
    return mcp_client(env, "modern")


async def wait_done(c: Any, job_id: str, budget_s: float = 60, until: str = "terminal") -> dict[str, Any]:
    return await shared_wait_done(c, job_id, budget_s, until, step_s=10)


async def error_text(c: Client, tool: str, **args: Any) -> str:
    result = await c.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


async def submit(c: Client, command: str, *, image: str = IMAGE, **options: Any) -> dict[str, Any]:
    extra = {k: options.pop(k) for k in ("secret_env", "idempotency_key", "time_limit", "dry_run") if k in options}
    options.setdefault("instance", "gpu-box")
    options.setdefault("gpu_name", "L4")
    return await call(c, "submit_job", platform="brev", command=command, image=image, options=options, **extra)
