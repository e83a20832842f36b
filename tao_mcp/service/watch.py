"""One reader per job: the last reading of each fact about a job, shared by every waiter and status call.

A fact is a named slot of a job's `JobWatch` (`LAST_LINE`, `RUNNER_PHASE`, and whatever a later feature adds,
such as epoch progress): its value, when it was read, and the read in flight. `JobWatches.fact(job_id, name,
max_age, read)` answers from the slot while it is no older than `max_age`, otherwise runs `read` ONCE for every
concurrent caller. So 50 waiters on one job cost the backend what one costs. A value is whatever the reader
returns (already redacted: a fact is shown to agents as is); a read that raises is not remembered and the error
reaches every caller that shared it.

Memory is bounded: the watches of the `MAX_JOBS` most recently used jobs are kept, a few small values each.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

LAST_LINE = "last_line"  # str | None: the log's last line, redacted
RUNNER_PHASE = "runner_phase"  # str | None: the runner's latest message ("download 3/120 files"), redacted
MAX_JOBS = 4096


@dataclass
class Fact:
    value: Any
    read_at: float  # monotonic


@dataclass
class _Read:
    done: anyio.Event = field(default_factory=anyio.Event)
    value: Any = None
    error: BaseException | None = None


@dataclass
class JobWatch:
    """What the server last read about one job, fact by fact."""

    job_id: str
    facts: dict[str, Fact] = field(default_factory=dict)
    reading: dict[str, _Read] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        fact = self.facts.get(name)
        return fact.value if fact else None


class JobWatches:
    """The per-job facts of the jobs being watched (least recently used dropped past MAX_JOBS)."""

    def __init__(self, max_jobs: int = MAX_JOBS, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_jobs = max_jobs
        self.clock = clock
        self.reads: Counter[str] = Counter()  # fact name -> backend reads made (tests and benchmarks count them)
        self._jobs: OrderedDict[str, JobWatch] = OrderedDict()

    def watch(self, job_id: str) -> JobWatch:
        watch = self._jobs.get(job_id)
        if watch is None:
            watch = self._jobs[job_id] = JobWatch(job_id)
            while len(self._jobs) > self.max_jobs:
                oldest, dropped = next(iter(self._jobs.items()))
                if dropped.reading:  # a read in flight keeps its watch: its sharers are waiting on it
                    break
                del self._jobs[oldest]
        self._jobs.move_to_end(job_id)
        return watch

    def peek(self, job_id: str, name: str) -> Fact | None:
        """The last reading of a fact, however old (None: never read)."""
        watch = self._jobs.get(job_id)
        return watch.facts.get(name) if watch else None

    def put(self, job_id: str, name: str, value: Any) -> None:
        """Remember a fact read by some other way (a sweep, a log page that happened to include it)."""
        self.watch(job_id).facts[name] = Fact(value, self.clock())

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    async def fact(self, job_id: str, name: str, max_age: float, read: Callable[[], Awaitable[T]]) -> T:
        """The fact's value: remembered when no older than max_age, else read once for all concurrent callers."""
        while True:
            watch = self.watch(job_id)
            known = watch.facts.get(name)
            if known is not None and self.clock() - known.read_at <= max_age:
                value: T = known.value
                return value
            shared = watch.reading.get(name)
            if shared is None:
                watch.reading[name] = shared = _Read()
                self.reads[name] += 1
                try:
                    shared.value = await read()
                    watch.facts[name] = Fact(shared.value, self.clock())
                except BaseException as exc:
                    shared.error = exc
                    raise
                finally:
                    del watch.reading[name]
                    shared.done.set()
                return shared.value  # type: ignore[no-any-return]
            await shared.done.wait()
            if shared.error is None:
                result: T = shared.value
                return result
            if not isinstance(shared.error, anyio.get_cancelled_exc_class()):
                raise shared.error
            # the reader was cancelled (its caller went away), not the read: read again for ourselves
