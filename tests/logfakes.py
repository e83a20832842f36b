"""Log drivers for pure tests: a log FILE read through the real shell script (bash, as over SSH) and a log
STREAM answered from rows in memory (as Docker / Kubernetes / Lepton answer "the last n lines")."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import anyio

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import JobRef, LogChunk, LogMark, LogMode

REF = JobRef("j", "tao-j", "1", {}, 0.0)


class FileLog:
    """read_log over a local file, through logfile.read_file and bash: the script SLURM and Brev run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.scripts: list[str] = []

    @classmethod
    def of(cls, tmp_path: Path, lines: list[str], *, newline: bool = True) -> FileLog:
        path = tmp_path / "job.log"
        path.write_bytes(("\n".join(lines) + ("\n" if newline and lines else "")).encode())
        return cls(path)

    async def run(self, script: str) -> str:
        self.scripts.append(script)
        done = await anyio.run_process(["bash", "-c", script], check=True)
        return done.stdout.decode()

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        chunk = await logfile.read_file(
            self.run, shlex.quote(str(self.path)), mode=mode, at=at, limit=limit, context=context, max_bytes=max_bytes
        )
        assert chunk is not None
        return chunk

    async def line_number(self, ref: JobRef, at: LogMark, bound: int) -> int | None:
        return await logfile.line_number(self.run, shlex.quote(str(self.path)), at, bound)


def run_sync(script: str) -> str:
    return subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout.decode()


class StreamLog:
    """read_log over timestamped rows held in memory, through logfile.read_stream; counts the rows it hands out
    (what a platform would send)."""

    def __init__(self, rows: list[logfile.Row], *, until_supported: bool = False) -> None:
        self.rows = rows
        self.until_supported = until_supported
        self.sent = 0
        self.queries: list[tuple[int, int | None]] = []

    async def tail(self, n: int, until: int | None) -> list[logfile.Row]:
        self.queries.append((n, until))
        rows = [r for r in self.rows if until is None or r[0] <= until] if self.until_supported else self.rows
        out = rows[-n:] if n else []
        self.sent += len(out)
        return out

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        return await logfile.read_stream(
            self.tail, mode=mode, at=at, limit=limit, context=context, until_supported=self.until_supported
        )


async def read_page(
    driver: Any, ref: JobRef, mode: LogMode = "tail", at: LogMark | None = None, limit: int = 10
) -> LogChunk:
    """One window of a real driver's log, without context lines (what a page shows)."""
    chunk: LogChunk = await driver.read_log(ref, mode=mode, at=at, limit=limit, context=0, max_bytes=1 << 24)
    chunk.lines, chunk.marks, chunk.context = chunk.lines[chunk.context :], chunk.marks[chunk.context :], 0
    return chunk
