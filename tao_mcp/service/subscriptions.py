"""Who is told when a job changes: the resource subscriptions of connected sessions, kept apart from MCP.

The tool layer registers, per subscriber (an MCP session) and topic (a resource URI), a `Notify` callback; the
poller hands every sweep's observations to `observed`, which calls back the subscribers of the jobs whose state
changed; a submit calls `job_added`, which calls back every subscriber's list-changed callback. Callbacks run in
the service's task group, never in the sweep: a slow client does not hold up polling. A callback that fails (its
session went away) drops everything that subscriber registered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import anyio
import anyio.abc

from tao_mcp.drivers.base import Observation
from tao_mcp.states import JobState

log = logging.getLogger(__name__)

Notify = Callable[[], Awaitable[None]]


@dataclass
class _Job:
    status: JobState | None  # the state last told (None: not known yet; the first observation is told)
    topics: dict[tuple[object, str], Notify] = field(default_factory=dict)  # (subscriber, topic) -> callback


class Subscriptions:
    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._list_changed: dict[object, Notify] = {}  # subscriber -> its list-changed callback
        self._task_group: anyio.abc.TaskGroup | None = None

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    def subscribe(
        self, subscriber: object, job_id: str, topic: str, status: JobState | None, notify: Notify, list_changed: Notify
    ) -> None:
        """Tell `notify` when the job's state moves on from `status` (its state when subscribing)."""
        job = self._jobs.setdefault(job_id, _Job(status))
        job.topics[(subscriber, topic)] = notify
        self._list_changed[subscriber] = list_changed

    def unsubscribe(self, subscriber: object, job_id: str, topic: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.topics.pop((subscriber, topic), None)
            if not job.topics:
                del self._jobs[job_id]

    def topics(self, job_id: str) -> int:
        """How many subscriptions the job has (tests)."""
        job = self._jobs.get(job_id)
        return len(job.topics) if job else 0

    def drop(self, subscriber: object) -> None:
        """Forget everything a subscriber registered (its session is gone)."""
        self._list_changed.pop(subscriber, None)
        for job_id, job in list(self._jobs.items()):
            for key in [k for k in job.topics if k[0] is subscriber]:
                del job.topics[key]
            if not job.topics:
                del self._jobs[job_id]

    def observed(self, observations: Mapping[str, Observation]) -> None:
        """A sweep's readings: tell the subscribers of each job whose state changed."""
        for job_id, obs in observations.items():
            job = self._jobs.get(job_id)
            if job is None or job.status == obs.status:
                continue
            job.status = obs.status
            for (subscriber, _), notify in list(job.topics.items()):
                self._send(subscriber, notify)

    def job_added(self) -> None:
        for subscriber, notify in list(self._list_changed.items()):
            self._send(subscriber, notify)

    def _send(self, subscriber: object, notify: Notify) -> None:
        if self._task_group is not None:
            self._task_group.start_soon(self._deliver, subscriber, notify)

    async def _deliver(self, subscriber: object, notify: Notify) -> None:
        try:
            await notify()
        except Exception as exc:
            log.debug("dropping the subscriptions of a session that went away: %r", exc)
            self.drop(subscriber)
