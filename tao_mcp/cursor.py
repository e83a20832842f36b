"""Paging cursors: opaque to the agent, versioned, and checked before anything is done with them.

A cursor is base64url of the JSON list `[version, kind, *values]`. The kind says which listing made it
(job logs, the job list, a storage listing) and the values are what that listing needs to resume, including what
the cursor is bound to (a job id, a URI), so a cursor passed to the wrong call is refused rather than misread.
Whatever does not decode to exactly that — garbage, bytes that are not UTF-8, another kind, another version,
values of the wrong type — is `E_BAD_INPUT: cursor: ...`, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from tao_mcp.errors import TaoError

VERSION = 1
MAX_CHARS = 4096  # longer than any cursor this server makes (an S3 continuation token is < 1 KiB)
Value = str | int | float


def encode(kind: str, *values: Value) -> str:
    body = json.dumps([VERSION, kind, *values], separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode(cursor: object, kind: str, *types: type[Value]) -> tuple[Any, ...]:
    """The values of a cursor made by `encode(kind, ...)`, checked against `types` (ints must be >= 0)."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CHARS:
        raise bad_cursor("it is empty or too long to be one this server made")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise bad_cursor("it is not one this server made (it does not decode)") from None
    if not isinstance(data, list) or len(data) < 2 or data[0] != VERSION:
        raise bad_cursor("it is not one this server made (unknown format or version)")
    if data[1] != kind:
        raise bad_cursor(f"it was made by another listing ({str(data[1])[:20]!r}), not by this one")
    values = tuple(data[2:])
    if len(values) != len(types) or not all(_fits(v, t) for v, t in zip(values, types, strict=True)):
        raise bad_cursor("its content is not what this listing writes")
    return values


def _fits(value: object, expected: type[Value]) -> bool:
    if isinstance(value, bool):
        return False
    if expected is float:
        return isinstance(value, int | float) and value == value  # not NaN
    if expected is int:
        return isinstance(value, int) and value >= 0
    return isinstance(value, expected)


def bad_cursor(problem: str) -> TaoError:
    return TaoError(
        "E_BAD_INPUT",
        f"cursor: {problem}",
        "omit cursor to start from the first page, or pass next_cursor from the previous answer unchanged",
    )
