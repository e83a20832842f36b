"""Who is told when a job changes: the resource subscriptions of connected sessions, kept apart from MCP.

The tool layer registers, per subscriber (an MCP session, or the 2026-07-28 listen bus) and topic (a resource
URI), a `Notify` callback. A job's state is taken from two places: the poller hands every sweep's observations to
`observed` (told at once), and every CHECK_EVERY_S the stored state of the subscribed jobs is read (`read_statuses`),
because the store is also written where this server's poller does not look (another server process sharing the
store swept the job to its end first, a cancel). Subscribers of a job whose state changed are called back, and
`read_progress` is asked for the training progress of each subscribed job still running: a new status.json record
(the next epoch, a new metric) is a change too. A submit calls
`job_added`, which calls back every subscriber's list-changed callback. Callbacks and progress reads run in the
service's task group, never in the sweep: a slow client or log read does not hold up polling. A callback that
fails (its session went away) drops everything that subscriber registered.
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
# The stored state of these jobs (a job missing from the answer is left alone).
ReadStatuses = Callable[[list[str]], Awaitable[Mapping[str, JobState]]]
CHECK_EVERY_S = 2.0
# The job's latest training progress (any comparable value; None: none reported, or not readable now).
ReadProgress = Callable[[str], Awaitable[object]]


async def _no_progress(_: str) -> object:
    return None


@dataclass
class _Job:
    status: JobState | None  # the state last told (None: not known yet; the first observation is told)
    progress: object = None  # the progress last told (or seen when subscribing)
    checking: bool = False  # a progress read is in flight (a slow read never piles up behind the sweeps)
    topics: dict[tuple[object, str], Notify] = field(default_factory=dict)  # (subscriber, topic) -> callback


class Subscriptions:
    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._list_changed: dict[object, Notify] = {}  # subscriber -> its list-changed callback
        self._task_group: anyio.abc.TaskGroup | None = None
        self._read_progress: ReadProgress = _no_progress

    def start(
        self,
        task_group: anyio.abc.TaskGroup,
        read_progress: ReadProgress = _no_progress,
        read_statuses: ReadStatuses | None = None,
    ) -> None:
        self._task_group = task_group
        self._read_progress = read_progress
        if read_statuses is not None:
            task_group.start_soon(self._check_stored, read_statuses, name="subscriptions")

    def active(self) -> bool:
        """Whether any job is subscribed to (the poller then keeps its sweeps frequent)."""
        return bool(self._jobs)

    def subscribe(
        self,
        subscriber: object,
        job_id: str,
        topic: str,
        status: JobState | None,
        notify: Notify,
        list_changed: Notify | None = None,
        progress: object = None,
    ) -> None:
        """Tell `notify` when the job's state moves on from `status`, or its progress from `progress` (both as
        the subscriber last saw them)."""
        job = self._jobs.setdefault(job_id, _Job(status, progress))
        job.topics[(subscriber, topic)] = notify
        if list_changed is not None:
            self._list_changed[subscriber] = list_changed

    def unsubscribe(self, subscriber: object, job_id: str, topic: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.topics.pop((subscriber, topic), None)
            if not job.topics:
                del self._jobs[job_id]

    def on_list_changed(self, subscriber: object, notify: Notify | None) -> None:
        """Register (None: forget) a subscriber that hears only of new jobs."""
        if notify is None:
            self._list_changed.pop(subscriber, None)
        else:
            self._list_changed[subscriber] = notify

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
        """A sweep's readings: tell the subscribers of each job whose state changed; check the running ones'
        progress."""
        self.seen({job_id: obs.status for job_id, obs in observations.items()})

    def seen(self, statuses: Mapping[str, JobState]) -> None:
        for job_id, status in statuses.items():
            job = self._jobs.get(job_id)
            if job is None:
                continue
            if job.status != status:
                job.status = status
                self._tell(job)
            if status == JobState.RUNNING and not job.checking and self._task_group is not None:
                job.checking = True
                self._task_group.start_soon(self._check_progress, job_id, job)

    async def _check_stored(self, read_statuses: ReadStatuses) -> None:
        while True:
            await anyio.sleep(CHECK_EVERY_S)
            if not self._jobs:
                continue
            try:
                stored = await read_statuses(list(self._jobs))
            except Exception:  # a bug or a locked store must not end the checks
                log.exception("reading the stored state of subscribed jobs failed")
                continue
            self.seen(stored)

    def job_added(self) -> None:
        for subscriber, notify in list(self._list_changed.items()):
            self._send(subscriber, notify)

    async def _check_progress(self, job_id: str, job: _Job) -> None:
        try:
            progress = await self._read_progress(job_id)
        except Exception as exc:  # a log that cannot be read now is no change; the next sweep asks again
            log.debug("progress of %s not read: %r", job_id, exc)
            return
        finally:
            job.checking = False
        if progress is not None and progress != job.progress and self._jobs.get(job_id) is job:
            job.progress = progress
            self._tell(job)

    def _tell(self, job: _Job) -> None:
        for (subscriber, _), notify in list(job.topics.items()):
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
