"""One shared poll loop per platform.

Every status call and every wait asks the same loop for a fresh sweep; a sweep reads the state of all
open jobs of the platform in one batched driver call (SLURM: one squeue + one sacct). While nobody asks,
the loop backs off 0, 2, 4, 8 ... 60 s between sweeps, like submitit's watcher. Sweeps run in the loop's
own task, so a cancelled wait never interrupts a sweep another caller is waiting for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio

from tao_mcp.drivers.base import Driver
from tao_mcp.errors import TaoError
from tao_mcp.service.store import JobStore

log = logging.getLogger(__name__)

BACKOFF_S = (0, 2, 4, 8, 16, 32, 60)
# A launch whose backend id was never stored and whose name the backend does not know after this long
# did not happen (sbatch itself is synchronous; accounting lags by about a second).
LOST_LAUNCH_GRACE_S = 120.0


class PlatformPoller:
    def __init__(self, platform: str, store: JobStore, get_driver: Callable[[], Awaitable[Driver]]) -> None:
        self.platform = platform
        self.store = store
        self.get_driver = get_driver
        self.sweeps = 0
        self.last_sweep_at = 0.0
        self.last_error: str | None = None  # set while the backend is unreachable
        self.unanswered: set[str] = set()  # open jobs the last sweep got no reading for
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
            return "the backend gave no answer for this job in the last sweep"
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
            if asked:
                self._backoff = 0
            elif had_jobs:
                self._backoff = min(self._backoff + 1, len(BACKOFF_S) - 1)
            else:
                # Nothing open: sleep until someone asks (a submit kicks the loop).
                self._backoff = len(BACKOFF_S) - 1

    async def sweep(self) -> bool:
        """One batched read of every open job of this platform. Returns whether there were any."""
        records = self.store.open_jobs(self.platform)
        try:
            if not records:
                return False
            driver = await self.get_driver()
            unresolved = [r for r in records if r.backend_id is None]
            if unresolved:
                found = await driver.find([r.ref() for r in unresolved])
                for record in unresolved:
                    if record.job_id in found:
                        self.store.set_launch_state(record.job_id, "launched", found[record.job_id])
                        log.info("reconciled %s by name: backend id %s", record.job_id, found[record.job_id])
                    elif time.time() - record.created_at > LOST_LAUNCH_GRACE_S:
                        self.store.mark_failed_launch(
                            record.job_id,
                            f"the launch was interrupted and the backend has no job named {record.backend_name}; "
                            "nothing is running",
                        )
                records = self.store.open_jobs(self.platform)
            known = [r for r in records if r.backend_id]
            observations = await driver.observe([r.ref() for r in known]) if known else {}
            for record in known:
                obs = observations.get(record.job_id)
                if obs is not None:
                    self.store.apply(record.job_id, obs)
            self.unanswered = {r.job_id for r in known if r.job_id not in observations}
            self.last_error = None
            return True
        except TaoError as exc:  # BackendUnreachable, missing credentials: never a job state
            self.last_error = exc.cause
            log.warning("%s sweep failed: %s", self.platform, exc.cause)
            return bool(records)
        finally:
            self.sweeps += 1
            self.last_sweep_at = time.monotonic()
