"""Lepton job logs: Loki `GET /logs` pages read forward from the last timestamp seen, kept per job in memory.

A few jobs' lines are cached (LOG_CACHE_JOBS, at most MAX_CACHED_LINES each; older lines are dropped and counted
in `offset`) so that paging through a long log reads only what is new.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tao_mcp.drivers import logfile
from tao_mcp.drivers.lepton.client import LeptonClient

LOG_PAGE = 2000
MAX_CACHED_LINES = 200_000
LOG_CACHE_JOBS = 8


@dataclass
class LogCache:
    lines: list[str]
    offset: int  # absolute position of lines[0] (older lines were dropped past MAX_CACHED_LINES)
    last_ts: int  # newest timestamp read (ns)
    at_last_ts: int  # lines already read whose timestamp is last_ts (Loki's start is inclusive)


def loki_entries(answer: Any) -> list[tuple[int, str]]:
    """Loki `{"data":{"result":[{"stream":{...},"values":[["<ns>","line"],...]}]}}` -> merged, sorted entries."""
    data = (answer or {}).get("data") if isinstance(answer, Mapping) else None
    streams = (data or {}).get("result") or []
    entries: list[tuple[int, int, int, str]] = []
    for s_index, stream in enumerate(streams):
        if not isinstance(stream, Mapping):
            continue
        values = stream.get("values") or []
        order = sorted(range(len(values)), key=lambda i: int(values[i][0]))  # backward streams come newest first
        for position, i in enumerate(order):
            ts, line = values[i][0], values[i][1]
            for part in str(line).rstrip("\n").split("\n"):
                entries.append((int(ts), s_index, position, part))
    entries.sort()
    return [(ts, line) for ts, _, _, line in entries]


class LokiLogs:
    """The cached lines of the last few jobs whose logs were read."""

    def __init__(self, client: LeptonClient) -> None:
        self.client = client
        self._caches: OrderedDict[str, LogCache] = OrderedDict()

    async def fetch_new_lines(self, backend_id: str, since_ns: int | None) -> LogCache:
        """The job's cache after reading every line newer than the last one read (NotFound: no such job)."""
        cache = self._caches.get(backend_id) or LogCache([], 0, since_ns or 0, 0)
        end_ns = int((time.time() + 300) * 1e9)
        while True:
            answer = await self.client.get(
                "/logs",
                job=backend_id,
                start=cache.last_ts,
                end=end_ns,
                limit=LOG_PAGE,
                direction="forward",
                job_query_mode="alive_and_archive",
            )
            entries = loki_entries(answer)
            skip = cache.at_last_ts
            fresh = []
            for ts, line in entries:
                if ts < cache.last_ts:
                    continue
                if ts == cache.last_ts and skip > 0:
                    skip -= 1
                    continue
                fresh.append((ts, line))
            for ts, line in fresh:
                cache.lines.append(logfile.clip(line))
                cache.at_last_ts = cache.at_last_ts + 1 if ts == cache.last_ts else 1
                cache.last_ts = ts
            if len(cache.lines) > MAX_CACHED_LINES:
                drop = len(cache.lines) - MAX_CACHED_LINES
                del cache.lines[:drop]
                cache.offset += drop
            if len(entries) < LOG_PAGE or not fresh:
                break
        self._caches[backend_id] = cache
        self._caches.move_to_end(backend_id)
        while len(self._caches) > LOG_CACHE_JOBS:
            self._caches.popitem(last=False)
        return cache
