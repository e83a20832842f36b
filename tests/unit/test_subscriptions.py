"""The subscription registry: a state change tells the job's subscribers once, a repeated reading tells nobody,
and a subscriber whose session went away is dropped, without an error reaching the sweep."""

from __future__ import annotations

import anyio
import pytest

from tao_mcp.drivers.base import Observation
from tao_mcp.service.subscriptions import Notify, Subscriptions
from tao_mcp.states import JobState

pytestmark = [pytest.mark.anyio]


def reading(status: JobState) -> Observation:
    return Observation(status=status, raw_state=str(status))


async def test_changes_are_told_and_a_dead_session_is_dropped() -> None:
    told: list[str] = []
    subs = Subscriptions()

    def notify(name: str) -> Notify:
        async def send() -> None:
            told.append(name)

        return send

    async def gone() -> None:
        raise anyio.ClosedResourceError

    async with anyio.create_task_group() as tg:
        subs.start(tg)
        subs.subscribe("alive", "j1", "tao://jobs/j1", JobState.PENDING, notify("j1"), notify("list"))
        subs.subscribe("dead", "j1", "tao://jobs/j1/logs", JobState.PENDING, gone, gone)
        subs.observed({"j1": reading(JobState.PENDING), "other": reading(JobState.RUNNING)})  # nothing changed
        await anyio.wait_all_tasks_blocked()
        assert told == [] and subs.topics("j1") == 2

        subs.observed({"j1": reading(JobState.RUNNING)})
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1"]
        assert subs.topics("j1") == 1  # the dead session's subscription went with it

        subs.job_added()
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1", "list"]  # the dead session was not told (nor did it fail anything)

        subs.unsubscribe("alive", "j1", "tao://jobs/j1")
        subs.observed({"j1": reading(JobState.COMPLETE)})
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1", "list"] and subs.topics("j1") == 0
