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


async def test_new_progress_of_a_running_job_is_told_once() -> None:
    told: list[str] = []
    latest: dict[str, object] = {"j1": None}
    reads: list[str] = []

    async def read_progress(job_id: str) -> object:
        reads.append(job_id)
        if latest[job_id] == "unreadable":
            raise ConnectionError("the log cannot be read now")
        return latest[job_id]

    async def notify() -> None:
        told.append("j1")

    subs = Subscriptions()
    async with anyio.create_task_group() as tg:
        subs.start(tg, read_progress)
        subs.subscribe("s", "j1", "tao://jobs/j1", JobState.RUNNING, notify, progress="epoch 1")
        latest["j1"] = "epoch 1"  # what the subscriber saw already
        subs.observed({"j1": reading(JobState.RUNNING)})
        await anyio.wait_all_tasks_blocked()
        assert told == [] and reads == ["j1"]

        latest["j1"] = "epoch 2"
        subs.observed({"j1": reading(JobState.RUNNING)})
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1"]
        subs.observed({"j1": reading(JobState.RUNNING)})  # the same epoch again: nobody is told
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1"]

        latest["j1"] = "unreadable"  # a failed read is no change and keeps the subscription
        subs.observed({"j1": reading(JobState.RUNNING)})
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1"] and subs.topics("j1") == 1 and subs.active()

        reads.clear()
        subs.observed({"j1": reading(JobState.COMPLETE)})  # a state change is told; a finished job is not read
        await anyio.wait_all_tasks_blocked()
        assert told == ["j1", "j1"] and reads == []


async def test_a_change_written_to_the_store_elsewhere_is_told() -> None:
    """Another server process (or a cancel) wrote the job's end: this server's sweeps never observe it, the stored
    state check does."""
    told: list[str] = []
    stored = {"j1": JobState.RUNNING}

    async def read_statuses(ids: list[str]) -> dict[str, JobState]:
        return {i: stored[i] for i in ids if i in stored}

    async def notify() -> None:
        told.append("j1")

    subs = Subscriptions()
    async with anyio.create_task_group() as tg:
        subs.start(tg, read_statuses=read_statuses)
        subs.subscribe("s", "j1", "tao://jobs/j1", JobState.RUNNING, notify)
        stored["j1"] = JobState.COMPLETE
        with anyio.fail_after(10):
            while not told:
                await anyio.sleep(0.05)
        assert told == ["j1"]
        tg.cancel_scope.cancel()
