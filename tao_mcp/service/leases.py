"""Launch leases: whether a job's launch is in flight right now, in this process or in another server process.

A record left in launch_state 'launching' with no backend id is either a launch still running or one whose
process died (SIGKILL, power cut) before it could store the backend id. Only the second may be resumed by a
retried submit_job. The difference is a POSIX record lock, one byte per job in one file next to the store:
the launching process holds it for the whole launch and the kernel drops it when that process dies. Record
locks do not exclude the process that holds them, so launches of this process are also kept in a set.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


class LaunchLeases:
    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._held: set[str] = set()

    @staticmethod
    def _offset(job_id: str) -> int:
        return int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16)

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[bool]:
        """Hold the lease for the duration of a launch; yields False when someone else is launching this job."""
        if job_id in self._held:
            yield False
            return
        offset = self._offset(job_id)
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            yield False
            return
        self._held.add(job_id)
        try:
            yield True
        finally:
            self._held.discard(job_id)
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        os.close(self._fd)
