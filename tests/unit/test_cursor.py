"""Paging cursors: what one listing made, that listing reads back; anything else is E_BAD_INPUT, never a crash."""

from __future__ import annotations

import base64

import pytest

from tao_mcp import cursor
from tao_mcp.drivers.base import LogMark
from tao_mcp.errors import TaoError
from tao_mcp.service.jobs import log_cursor, log_cursor_for
from tao_mcp.storage.uri import decode_cursor, encode_cursor, parse_uri


def refused(text: object, kind: str = "log", *types: type) -> str:
    with pytest.raises(TaoError) as info:
        cursor.decode(text, kind, *(types or (str, int)))
    message = str(info.value)
    assert message.startswith("E_BAD_INPUT: cursor: ") and "Fix: omit cursor" in message, message
    return message


def test_round_trip_keeps_values_and_types() -> None:
    made = cursor.encode("jobs", 1764547200.123456, "job-1")
    assert cursor.decode(made, "jobs", float, str) == (1764547200.123456, "job-1")
    assert cursor.decode(cursor.encode("log", "j", 0), "log", str, int) == ("j", 0)
    odd = "name-\udcff\t\u00e9"  # a file name that is not UTF-8 on disk arrives with a surrogate
    assert cursor.decode(cursor.encode("file", odd), "file", str) == (odd,)
    assert made.isascii() and "=" not in made


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage!",
        "L100",
        "\udcff",
        "é",
        "x" * (cursor.MAX_CHARS + 1),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b"{not json").decode(),
        base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()[: cursor.MAX_CHARS],
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'[2, "log", "j", 1]').decode(),  # another version
        cursor.encode("jobs", 1.0, "j"),  # another kind
        cursor.encode("log", "j"),  # too few values
        cursor.encode("log", "j", 1, 2),  # too many
        cursor.encode("log", "j", -1),  # negative position
        cursor.encode("log", "j", "7"),  # a string for an int
        base64.urlsafe_b64encode(b'[1, "log", "j", true]').decode(),  # a bool is not a position
        base64.urlsafe_b64encode(b'[1, "log", "j", NaN]').decode(),
        None,
        7,
    ],
)
def test_what_does_not_decode_is_bad_input(text: object) -> None:
    refused(text)


def test_a_log_cursor_is_bound_to_its_job_and_says_which_way() -> None:
    after = log_cursor_for("job-a", "after", LogMark(42, 1))
    assert log_cursor(after, "job-a") == ("after", LogMark(42, 1))
    assert log_cursor(log_cursor_for("job-a", "before", LogMark(7)), "job-a") == ("before", LogMark(7, 0))
    with pytest.raises(TaoError, match="E_BAD_INPUT: cursor: it was made for the log of job job-a"):
        log_cursor(after, "job-b")
    for bad in (cursor.encode("log", "job-a", 42), cursor.encode("log", "job-a", "sideways", 1, 0)):
        with pytest.raises(TaoError, match="E_BAD_INPUT: cursor: "):  # an older server's cursor, or a made-up one
            log_cursor(bad, "job-a")


def test_a_listing_cursor_is_bound_to_its_folder() -> None:
    folder = parse_uri("s3://bucket/data")
    made = encode_cursor(folder, "token")
    assert decode_cursor(made, parse_uri("s3://bucket/data/"), str) == "token"  # the same folder, spelled with /
    with pytest.raises(TaoError, match="E_BAD_INPUT: cursor: it was made for the listing of s3://bucket/data"):
        decode_cursor(made, parse_uri("s3://bucket/other"), str)
    with pytest.raises(TaoError, match="E_BAD_INPUT: cursor: it was made by another listing"):
        decode_cursor(made, parse_uri("lustre:///bucket/data"), int)
