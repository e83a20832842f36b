"""Resource subscriptions: a client subscribed to tao://jobs/{job_id} is told of the job's state changes without
calling any tool, an unsubscribed URI is not, and a submit tells subscribers the resource list changed."""

from __future__ import annotations

import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from tao_mcp.server import build_server
from tests.helpers import ResourceInbox, call, wait_done

# resources/subscribe is the handshake era's way (the 2026-07-28 era listens instead): this tests that era.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")]

IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"


async def test_subscribed_job_is_pushed_its_state_changes(lepton_env: dict[str, str]) -> None:
    inbox = ResourceInbox()
    async with Client(build_server(lepton_env), mode="legacy", message_handler=inbox) as c:
        resources = c.server_capabilities.resources
        assert resources is not None and resources.subscribe is True and resources.list_changed is True

        # Runs long enough to be seen Running before it completes: a change before and one after the unsubscribe.
        first = await call(
            c, "submit_job", platform="lepton", image=IMAGE, command="python train.py", env={"FAKE_DURATION_S": "6"}
        )
        job = f"tao://jobs/{first['job_id']}"
        await c.subscribe_resource(job)
        await c.subscribe_resource(f"{job}/logs")
        with pytest.raises(MCPError, match="not a job resource"):
            await c.subscribe_resource("tao://jobs/nosuchjob")

        # A submit while subscribed: the resource list changed.
        await call(
            c, "submit_job", platform="lepton", image=IMAGE, command="python train.py", env={"FAKE_DURATION_S": "1"}
        )
        await inbox.wait(lambda: inbox.list_changed >= 1)

        # No tool call from here until the first state change arrives: the poller's reading is pushed.
        await inbox.wait(lambda: job in inbox.updated and f"{job}/logs" in inbox.updated)  # both URIs are told
        await c.unsubscribe_resource(f"{job}/logs")
        told = len(inbox.updated)

        done = await wait_done(c, first["job_id"])
        assert done["status"] == "Complete", done
        await inbox.wait(lambda: inbox.updated[told:].count(job) >= 1)
        # The job moved on after the unsubscribe; only the still-subscribed URI heard of it.
        assert f"{job}/logs" not in inbox.updated[told:], inbox.updated
