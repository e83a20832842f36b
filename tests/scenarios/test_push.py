"""Push while a job trains: a subscribed client (resources/subscribe, the handshake era) and a listening one
(subscriptions/listen, 2026-07-28) hear of new epochs while the job stays Running, not only of state changes, and
a listener hears that the job list changed when a job is submitted. Neither calls a tool to learn of a change."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated

from tao_mcp.server import build_server
from tests.helpers import ResourceInbox, call
from tests.scenarios.platforms import Slurm
from tests.scenarios.test_scenarios import process_env

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slurm,
    pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed"),
]
EPOCHS = 8
DEADLINE_S = 300
TERMINAL = {"Complete", "Failed", "Error", "Canceled"}


async def read_status(c: Any, uri: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((await c.read_resource(uri)).contents[0].text)
    return status


def running_epoch(status: dict[str, Any]) -> int | None:
    progress = status.get("progress") or {}
    return progress.get("epoch") if status["status"] == "Running" else None


async def test_subscribers_hear_each_epoch_while_running(slurm_env: dict[str, str], request: Any) -> None:
    platform = Slurm(slurm_env, request)
    env = process_env(platform)
    inbox = ResourceInbox()
    async with (
        Client(build_server(env), mode="legacy", message_handler=inbox) as legacy,
        Client(build_server(env)) as modern,
    ):
        async with modern.listen(resources_list_changed=True) as news:
            sub = await call(modern, "submit_job", **platform.training(epochs=EPOCHS, seconds=5))
            with anyio.fail_after(60):
                assert isinstance(await anext(news), ResourcesListChanged)
        uri = f"tao://jobs/{sub['job_id']}"
        await legacy.subscribe_resource(uri)

        heard: dict[str, set[int]] = {"legacy": set(), "listen": set()}
        final: dict[str, str] = {}

        async def follow(era: str, c: Any, next_change: Callable[[], Awaitable[None]]) -> None:
            """Read the resource after each change this era is told of, until the job has finished."""
            while True:
                await next_change()
                status = await read_status(c, uri)
                if (epoch := running_epoch(status)) is not None:
                    heard[era].add(epoch)
                if status["status"] in TERMINAL:
                    final[era] = status["status"]
                    return

        async def listen() -> None:
            async with modern.listen(resource_subscriptions=[uri]) as events:

                async def next_event() -> None:
                    event = await anext(events)
                    assert event == ResourceUpdated(uri), event

                await follow("listen", modern, next_event)

        async def subscribed() -> None:
            told = len(inbox.updated)

            async def next_notification() -> None:
                nonlocal told
                await inbox.wait(lambda: len(inbox.updated) > told, DEADLINE_S)
                told = len(inbox.updated)

            await follow("legacy", legacy, next_notification)

        with anyio.fail_after(DEADLINE_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                tg.start_soon(subscribed)

    assert final == {"legacy": "Complete", "listen": "Complete"}, final
    # Only Pending -> Running -> Complete are state changes: more than one epoch heard while Running was pushed
    # as progress. The server reads progress at most every 10 s, so a 40 s run shows a few epochs, not all.
    assert len(heard["legacy"]) >= 2 and len(heard["listen"]) >= 2, heard
