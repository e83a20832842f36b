"""Lepton job logs: Loki `GET /logs` read BACKWARD from an end time with a limit (`direction=backward`), so a
tail costs its own lines whatever the log's size, and a page before a position asks for exactly that. Nothing is
cached: the server keeps no copy of a job's log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tao_mcp.drivers import logfile
from tao_mcp.drivers.lepton.client import LeptonClient

LOG_PAGE = 2000  # lines per request (Loki answers at most 5000)


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
    """The "last n lines" query of a job's log, for drivers/logfile.read_stream."""

    def __init__(self, client: LeptonClient) -> None:
        self.client = client

    async def tail(self, backend_id: str, since_ns: int, n: int, until_ns: int | None) -> list[logfile.Row]:
        """The last n lines at or before until_ns (default: now), oldest first; pages backward LOG_PAGE at a
        time. Loki's `end` is exclusive: asked one ns later and filtered here (the same on any server)."""
        rows: list[logfile.Row] = []
        newest = until_ns if until_ns is not None else int((time.time() + 300) * 1e9)
        end = newest + 1
        while len(rows) < n:
            want = min(n - len(rows), LOG_PAGE)
            answer = await self.client.get(
                "/logs",
                job=backend_id,
                start=since_ns,
                end=end,
                limit=want,
                direction="backward",
                job_query_mode="alive_and_archive",
            )
            answered = loki_entries(answer)
            entries = [(ts, logfile.clip(line)) for ts, line in answered if ts < end and ts <= newest]
            rows = entries + rows
            if len(answered) < want or not entries:
                break
            end = entries[0][0]  # the next page: lines older than the oldest one read
        return rows[-n:] if n else []
