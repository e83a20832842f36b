"""Redacted log windows: whole-window redaction, cut after redaction, grep on redacted text only.

The driver here reads a local file through the same shell script SLURM and Brev run (tests/logfakes.py); the
same paths run against SLURM, Docker, Kubernetes and the Lepton/Brev fakes in the backend suites."""

from __future__ import annotations

import base64
import secrets
import string
from pathlib import Path

import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import LOG_LINE_CHARS, RAW_LINE_CHARS, LogMark
from tao_mcp.errors import TaoError
from tao_mcp.service import logs
from tao_mcp.service.redaction import MASK, Redactor
from tests.logfakes import REF, FileLog

pytestmark = pytest.mark.anyio


def pem_key() -> tuple[str, list[str]]:
    body = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(25)]
    return "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"]), body


async def test_a_window_that_starts_inside_a_pem_key_masks_it(tmp_path: Path) -> None:
    key, body = pem_key()
    lines = ["start", *key.split("\n"), "after"] + [f"line {i}" for i in range(5)]
    log = FileLog.of(tmp_path, lines)
    data = log.path.read_bytes()
    inside = LogMark(data.index(body[10].encode()))
    for mode, at, limit in (("tail", None, 8), ("after", inside, 3), ("before", inside, 2), ("tail", None, 1)):
        window = await logs.read(log, REF, Redactor(), mode=mode, at=at, limit=limit)  # type: ignore[arg-type]
        assert window.lines
        assert not any(b in line for b in body for line in window.lines), (mode, limit)
    tail = await logs.read(log, REF, Redactor(), limit=9)  # type: ignore[arg-type]
    assert tail.lines[-6:] == ["after", *(f"line {i}" for i in range(5))] and tail.lines[0] == MASK


async def test_lines_are_cut_after_redaction_never_before(tmp_path: Path) -> None:
    secret = "".join(secrets.choice(string.ascii_letters) for _ in range(40))
    redactor = Redactor.from_settings({"NGC_KEY": secret})
    # The secret straddles the output cut (4000) and, in another line, the driver's raw cut.
    at_output_cut = "a" * (LOG_LINE_CHARS - 10) + secret + " tail"
    at_raw_cut = "b" * (RAW_LINE_CHARS - 10) + secret + " tail"
    # Many secrets shrink under redaction: text from behind the raw cut moves into the first 4000 characters.
    shrinking = secret.join(["x"] * (RAW_LINE_CHARS // len(secret) + 5))
    log = FileLog.of(tmp_path, [at_output_cut, at_raw_cut, shrinking])
    window = await logs.read(log, REF, redactor, mode="after", at=LogMark(0), limit=3)  # type: ignore[arg-type]
    assert window.lines[0].startswith("a" * (LOG_LINE_CHARS - 10) + MASK[:10])
    for line in window.lines:
        assert len(line) <= LOG_LINE_CHARS
        assert all(secret[i : i + 4] not in line for i in range(len(secret) - 3)), line[-60:]


async def test_grep_is_a_function_of_redacted_text_only(tmp_path: Path) -> None:
    """The oracle: grep for every prefix of a printed secret. Every answer must be the same as for a log that
    printed another value: nothing an answer says depends on the secret's characters."""
    secret = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(16))
    other = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(16))
    needles = [secret[:n] for n in range(1, len(secret) + 1)] + ["NGC_KEY=", "[RED", "=", "is "]

    async def answers(value: str) -> list[tuple[list[str], list[int]]]:
        lines = ["epoch 1", f"NGC_KEY={value}", f"token is {value}", base64.b64encode(value.encode()).decode()]
        log = FileLog.of(tmp_path, lines)
        redactor = Redactor.from_settings({"NGC_KEY": value})
        out = []
        for needle in needles:
            found = await logs.grep(log, REF, redactor, needle, limit=10)  # type: ignore[arg-type]
            out.append((found.lines, [m.at for m in found.marks]))
        return out

    assert await answers(secret) == await answers(other)


async def test_grep_searches_a_bounded_window_back_from_the_end_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "GREP_SPAN_BYTES", 4096)
    lines = [f"needle {i:05d}" if i % 1000 == 0 else f"line {i:05d}" for i in range(12_000)]
    log = FileLog.of(tmp_path, lines)
    data = log.path.read_bytes()
    window = 40_000  # bytes: the last ~3 300 lines
    found = await logs.grep(log, REF, Redactor(), "needle", limit=50, window_bytes=window)  # type: ignore[arg-type]
    began = data[: found.begin.at].count(b"\n")  # the line the search began at
    assert found.older and not found.newer and found.end.at == len(data)
    assert window - 13 * (window // 4096 + 1) < found.end.at - found.begin.at <= window  # less a cut line per span
    assert found.lines == [f"needle {i:05d}" for i in range(0, 12_000, 1000) if i >= began]
    assert found.scanned <= window + 4096
    assert all(s.count("tail -c +") <= 1 for s in log.scripts)  # span by span, from the end: no full read
    further = await logs.grep(  # type: ignore[arg-type]
        log, REF, Redactor(), "needle", mode="before", at=found.begin, limit=50, window_bytes=window
    )
    assert further.end == found.begin and further.lines[-1] == f"needle {(began - 1) // 1000 * 1000:05d}"
    capped = await logs.grep(log, REF, Redactor(), "needle", limit=2)  # type: ignore[arg-type]
    assert capped.lines == ["needle 10000", "needle 11000"] and capped.more and capped.older
    assert capped.begin == capped.marks[0]  # older matches: grep again before the oldest one shown
    forward = await logs.grep(log, REF, Redactor(), "needle", mode="after", at=LogMark(0), limit=3)  # type: ignore[arg-type]
    assert forward.lines == ["needle 00000", "needle 01000", "needle 02000"] and forward.more
    with pytest.raises(TaoError):
        await logs.grep(log, REF, Redactor(), "two\nlines", limit=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", [-12, -1, 0, 1, 12])
async def test_a_secret_split_by_a_window_boundary_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: int
) -> None:
    """Span boundaries fall inside a line that holds a secret (at every offset around it): neither the tail nor
    grep (which walks back span by span) shows a part of it, and grep for any part of it finds nothing."""
    secret = "".join(secrets.choice(string.ascii_letters) for _ in range(24))
    redactor = Redactor.from_settings({"NGC_KEY": secret})
    lines = [f"filler {i}" for i in range(300)] + [f"the key is {secret} ok"] + [f"after {i}" for i in range(40)]
    log = FileLog.of(tmp_path, lines)
    data = log.path.read_bytes()
    boundary = len(data) - (data.index(secret.encode()) + len(secret) // 2 + where)  # bytes from the end
    monkeypatch.setattr(logs, "GREP_SPAN_BYTES", boundary)
    monkeypatch.setattr(logfile, "FIRST_SPAN", boundary)
    parts = [secret[i : i + 5] for i in range(len(secret) - 4)]
    tail = await logs.read(log, REF, redactor, limit=60, context=0)  # type: ignore[arg-type]
    found = await logs.grep(log, REF, redactor, "key", limit=5)  # type: ignore[arg-type]
    assert found.lines == [f"the key is {MASK} ok"]  # read whole in the span before: masked, not cut
    for needle in parts[::4]:
        assert (await logs.grep(log, REF, redactor, needle, limit=5)).lines == []  # type: ignore[arg-type]
    for line in [*tail.lines, *found.lines]:
        assert not any(p in line for p in parts), line
