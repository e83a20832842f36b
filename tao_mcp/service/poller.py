"""One shared poll loop per platform.

A sweep reads the state of all open jobs of the platform in chunks of `SWEEP_CHUNK`, one batched driver call
per chunk (SLURM: one squeue + one sacct), so memory and each round's size are bounded by the chunk, not by the
number of open jobs. Store work runs in worker threads, in batches of `STORE_BATCH` rows (one transaction each,
writing only rows that change): the event loop never waits on SQLite. While nobody asks, the loop backs off 2, 4,
8 ... 60 s between sweeps, like submitit's watcher (at most 8 s while a client is subscribed to some job's
resources, so pushed updates stay timely); a requested sweep is followed by the first step, never by an
unrequested sweep straight away. Sweeps run in the loop's own task, so a cancelled
wait never interrupts a sweep another caller is waiting for.

`job_status` does not sweep: a reading no older than `POLL_INTERVAL_S` answers, otherwise `read_one` reads that
one job (concurrent callers for the same job share the read).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from tao_mcp.drivers.base import Driver, JobRef, Observation
from tao_mcp.errors import TaoError
from tao_mcp.service.store import JobStore

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0
BACKOFF_S = (POLL_INTERVAL_S, 4, 8, 16, 32, 60)
WATCHED_STEP = 2  # backoff step (8 s) never exceeded while a subscribed client waits to be told of changes
SWEEP_CHUNK = 1000  # open jobs per driver call (SLURM: ids per squeue/sacct)
# Rows per worker-thread store call (and per write transaction): between two calls the event loop gets the GIL
# back, so a short batch keeps the loop's stalls short (1 000-row calls stalled it about twice as long).
STORE_BATCH = 250
# A launch whose backend id was never stored and whose name the backend does not know after this long
# did not happen (sbatch itself is synchronous; accounting lags by about a second).
LOST_LAUNCH_GRACE_S = 120.0
NO_ANSWER = "the backend gave no answer for this job in the last sweep"


def next_backoff(step: int, *, asked: bool, had_jobs: bool) -> int:
    """The backoff step after a sweep: restart when asked, grow while jobs are open, longest when none are."""
    if asked:
        return 0
    if had_jobs:
        return min(step + 1, len(BACKOFF_S) - 1)
    return len(BACKOFF_S) - 1  # nothing open: sleep until someone asks (a submit kicks the loop)


@dataclasses.dataclass
class _SharedRead:
    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    problem: str | None = None


class PlatformPoller:
    def __init__(
        self,
        platform: str,
        store: JobStore,
        get_driver: Callable[[], Awaitable[Driver]],
        on_observed: Callable[[Mapping[str, Observation]], None] = lambda _: None,
        watched: Callable[[], bool] = lambda: False,
    ) -> None:
        self.platform = platform
        self.on_observed = on_observed  # told every reading once stored (resource subscriptions)
        self.watched = watched  # whether a client subscribed to some job: sweeps stay frequent while one does
        self.store = store
        self.get_driver = get_driver
        self.sweeps = 0
        self.last_sweep_at = 0.0  # monotonic end of the last sweep
        self.covered_at = 0.0  # wall-clock start of the last complete, successful sweep: its readings are newer
        self.last_error: str | None = None  # set while the backend is unreachable
        self.unanswered: set[str] = set()  # open jobs the last sweep got no reading for
        self._read_at: dict[str, float] = {}  # job -> wall clock of its last single read (recent ones only)
        self._reading: dict[str, _SharedRead] = {}  # single reads in flight, shared by concurrent callers
        self._wanted = anyio.Event()
        self._done = anyio.Event()
        self._backoff = 0

    def kick(self) -> None:
        """A job was submitted or canceled: sweep soon and restart the backoff."""
        self._backoff = 0
        self._wanted.set()

    def problem(self, job_id: str) -> str | None:
        """Why the last sweep has no fresh reading of this job, if it has none."""
        if self.last_error:
            return self.last_error
        if job_id in self.unanswered:
            return NO_ANSWER
        return None

    def fresh(self, job_id: str, created_at: float, now: float | None = None) -> bool:
        """Whether the store holds a reading of this job no older than the poll interval."""
        now = time.time() if now is None else now
        if self._read_at.get(job_id, 0.0) >= now - POLL_INTERVAL_S:
            return True
        if self.last_error or job_id in self.unanswered:
            return False
        return self.covered_at >= now - POLL_INTERVAL_S and created_at < self.covered_at

    async def read_one(self, ref: JobRef) -> str | None:
        """Read one job from the backend into the store. Returns why there is no fresh reading, if so."""
        shared = self._reading.get(ref.job_id)
        if shared is None:
            self._reading[ref.job_id] = shared = _SharedRead()
            try:
                shared.problem = await self._read_one(ref)
            finally:
                del self._reading[ref.job_id]
                shared.done.set()
        await shared.done.wait()
        return shared.problem

    async def _read_one(self, ref: JobRef) -> str | None:
        try:
            driver = await self.get_driver()
            missing = await self._read(driver, [ref])
        except TaoError as exc:  # BackendUnreachable, missing credentials: never a job state
            log.warning("%s read of %s failed: %s", self.platform, ref.job_id, exc.cause)
            return exc.cause
        if missing:
            self.unanswered.add(ref.job_id)
            return NO_ANSWER
        self.unanswered.discard(ref.job_id)
        now = time.time()
        # Only recent single reads are kept: the map stays as small as the reads of one poll interval.
        self._read_at = {k: t for k, t in self._read_at.items() if t >= now - POLL_INTERVAL_S}
        self._read_at[ref.job_id] = now
        return None

    async def refresh(self, max_age: float = 1.0) -> None:
        """Return once a sweep newer than max_age seconds has completed (shared with every other caller)."""
        if time.monotonic() - self.last_sweep_at <= max_age and self.sweeps:
            return
        done = self._done
        self._wanted.set()
        await done.wait()

    async def run(self) -> None:
        while True:
            if not self._wanted.is_set():
                with anyio.move_on_after(BACKOFF_S[self._backoff]):
                    await self._wanted.wait()
            asked = self._wanted.is_set()
            self._wanted = anyio.Event()
            try:
                had_jobs = await self.sweep()
            except Exception:  # a bug must not kill the loop every wait depends on
                log.exception("%s sweep crashed", self.platform)
                self.last_error = "internal error while polling (see the server log)"
                had_jobs = True
            done, self._done = self._done, anyio.Event()
            done.set()
            self._backoff = next_backoff(self._backoff, asked=asked, had_jobs=had_jobs)
            if had_jobs and self.watched():
                self._backoff = min(self._backoff, WATCHED_STEP)

    async def sweep(self) -> bool:
        """One read of every open job of this platform, chunk by chunk. Returns whether there were any."""
        started = time.time()
        after: tuple[float, str] | None = None
        unanswered: set[str] = set()
        had_jobs = False
        try:
            driver: Driver | None = None
            exhausted = False
            while not exhausted:
                refs: list[JobRef] = []
                while len(refs) < SWEEP_CHUNK:
                    limit = min(STORE_BATCH, SWEEP_CHUNK - len(refs))
                    batch = await anyio.to_thread.run_sync(
                        functools.partial(self.store.open_refs, self.platform, after=after, limit=limit)
                    )
                    refs += batch
                    if batch:
                        after = (batch[-1].created_at, batch[-1].job_id)
                    if len(batch) < limit:
                        exhausted = True
                        break
                if not refs:
                    break
                had_jobs = True
                driver = driver or await self.get_driver()
                unanswered |= await self._read(driver, refs)
            self.unanswered = unanswered
            self.last_error = None
            self.covered_at = started
            return had_jobs
        except TaoError as exc:  # BackendUnreachable, missing credentials: never a job state
            self.last_error = exc.cause
            log.warning("%s sweep failed: %s", self.platform, exc.cause)
            return had_jobs
        finally:
            self.sweeps += 1
            self.last_sweep_at = time.monotonic()

    async def _read(self, driver: Driver, refs: list[JobRef]) -> set[str]:
        """Observe these jobs and store what changed. Returns the ids the backend gave no reading for."""
        unresolved = [r for r in refs if r.backend_id is None]
        if unresolved:
            found = await self._reconcile(driver, unresolved)
            refs = [dataclasses.replace(r, backend_id=found[r.job_id]) if r.job_id in found else r for r in refs]
        known = [r for r in refs if r.backend_id]
        observations = await driver.observe(known) if known else {}
        readings = list(observations.items())
        for at in range(0, len(readings), STORE_BATCH):
            await anyio.to_thread.run_sync(self.store.apply_many, dict(readings[at : at + STORE_BATCH]))
        self.on_observed(observations)
        return {r.job_id for r in known if r.job_id not in observations}

    async def _reconcile(self, driver: Driver, unresolved: list[JobRef]) -> dict[str, str]:
        """Find launches whose backend id was never stored by their name; a long-lost one ends as Error."""
        found = await driver.find(unresolved)
        lost = [r for r in unresolved if r.job_id not in found and time.time() - r.created_at > LOST_LAUNCH_GRACE_S]

        def write() -> None:
            for job_id, backend_id in found.items():
                self.store.set_launch_state(job_id, "launched", backend_id)
                log.info("reconciled %s by name: backend id %s", job_id, backend_id)
            for ref in lost:
                self.store.mark_failed_launch(
                    ref.job_id,
                    f"the launch was interrupted and the backend has no job named {ref.backend_name}; "
                    "nothing is running",
                )

        if found or lost:
            await anyio.to_thread.run_sync(write)
        return found
