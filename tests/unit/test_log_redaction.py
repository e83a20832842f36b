"""Redacted log windows: whole-window redaction, cut after redaction, grep on redacted text only.

The driver here is a small in-memory fake (pure logic); the same paths run against SLURM, Docker, Kubernetes
and the Lepton/Brev fakes in the backend suites."""

from __future__ import annotations

import base64
import secrets
import string

import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import LOG_LINE_CHARS, RAW_LINE_CHARS, JobRef, LogChunk
from tao_mcp.errors import TaoError
from tao_mcp.service import logs
from tao_mcp.service.redaction import MASK, Redactor

pytestmark = pytest.mark.anyio
REF = JobRef("j", "tao-j", "1", {}, 0.0)


class MemoryLog:
    """A driver's read_log over lines held in memory, clipped like every driver clips."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = [logfile.clip(line) for line in lines]
        self.reads: list[tuple[int | None, int]] = []

    async def read_log(self, ref: JobRef, *, start: int | None, limit: int) -> LogChunk:
        self.reads.append((start, limit))
        return logfile.window(self.lines, start=start, limit=logfile.clamp(limit))


def pem_key() -> tuple[str, list[str]]:
    body = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(25)]
    return "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"]), body


async def test_a_window_that_starts_inside_a_pem_key_masks_it() -> None:
    key, body = pem_key()
    lines = ["start", *key.split("\n"), "after"] + [f"line {i}" for i in range(5)]
    for start, limit in ((None, 8), (10, 3), (5, 40), (None, 1)):
        window = await logs.read(MemoryLog(lines), REF, Redactor(), start=start, limit=limit)  # type: ignore[arg-type]
        assert not any(b in line for b in body for line in window.lines), (start, limit)
    tail = await logs.read(MemoryLog(lines), REF, Redactor(), start=None, limit=9)  # type: ignore[arg-type]
    assert tail.lines[-6:] == ["after", *(f"line {i}" for i in range(5))] and tail.lines[0] == MASK


async def test_lines_are_cut_after_redaction_never_before() -> None:
    secret = "".join(secrets.choice(string.ascii_letters) for _ in range(40))
    redactor = Redactor.from_settings({"NGC_KEY": secret})
    # The secret straddles the output cut (4000) and, in another line, the driver's raw cut.
    at_output_cut = "a" * (LOG_LINE_CHARS - 10) + secret + " tail"
    at_raw_cut = "b" * (RAW_LINE_CHARS - 10) + secret + " tail"
    # Many secrets shrink under redaction: text from behind the raw cut moves into the first 4000 characters.
    shrinking = secret.join(["x"] * (RAW_LINE_CHARS // len(secret) + 5))
    log = MemoryLog([at_output_cut, at_raw_cut, shrinking])
    window = await logs.read(log, REF, redactor, start=0, limit=3)  # type: ignore[arg-type]
    assert window.lines[0].startswith("a" * (LOG_LINE_CHARS - 10) + MASK[:10])
    for line in window.lines:
        assert len(line) <= LOG_LINE_CHARS
        assert all(secret[i : i + 4] not in line for i in range(len(secret) - 3)), line[-60:]


async def test_grep_is_a_function_of_redacted_text_only() -> None:
    """The oracle: grep for every prefix of a printed secret. Every answer must be the same as for a log that
    printed another value: nothing an answer says depends on the secret's characters."""
    secret = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(16))
    other = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(16))
    needles = [secret[:n] for n in range(1, len(secret) + 1)] + ["NGC_KEY=", "[RED", "=", "is "]

    async def answers(value: str) -> list[tuple[list[str], list[int]]]:
        lines = ["epoch 1", f"NGC_KEY={value}", f"token is {value}", base64.b64encode(value.encode()).decode()]
        redactor = Redactor.from_settings({"NGC_KEY": value})
        out = []
        for needle in needles:
            found = await logs.grep(MemoryLog(lines), REF, redactor, needle, start=None, limit=10)  # type: ignore[arg-type]
            out.append((found.lines, found.line_numbers))
        return out

    assert await answers(secret) == await answers(other)


async def test_grep_scans_a_bounded_window_and_reports_it() -> None:
    lines = [f"needle {i}" if i % 1000 == 0 else f"line {i}" for i in range(12_000)]
    log = MemoryLog(lines)
    found = await logs.grep(log, REF, Redactor(), "needle", start=None, limit=50)  # type: ignore[arg-type]
    assert found.end_line == 12_000 and found.first_line == 12_000 - logs.GREP_SCAN_LINES
    assert found.line_numbers == [n for n in range(0, 12_000, 1000) if n >= found.first_line]
    assert max(limit for _, limit in log.reads) <= 5000  # one driver window, whatever the log's size
    page = await logs.grep(log, REF, Redactor(), "needle", start=0, limit=50)  # type: ignore[arg-type]
    assert page.line_numbers == [0, 1000, 2000, 3000, 4000] and page.end_line == logs.GREP_SCAN_LINES
    with pytest.raises(TaoError):
        await logs.grep(log, REF, Redactor(), "two\nlines", start=None, limit=5)  # type: ignore[arg-type]
