"""Parsing of the URIs list_path/check_path accept, and their opaque paging cursors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tao_mcp import cursor
from tao_mcp.errors import TaoError

SCHEMES = ("s3://", "lustre://", "file://")
BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Target:
    """s3: bucket + key (no leading '/', '//' collapsed, a trailing '/' kept); lustre/file: an absolute path."""

    scheme: Literal["s3", "lustre", "file"]
    bucket: str = ""
    key: str = ""
    path: str = ""

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.key}"
        return f"{self.scheme}://{self.path}"

    def child(self, name: str, is_dir: bool) -> str:
        """The URI of an entry inside this folder."""
        if self.scheme == "s3":
            prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
            return f"s3://{self.bucket}/{prefix}{name}{'/' if is_dir else ''}"
        return f"{self.scheme}://{self.path.rstrip('/')}/{name}"


def parse_uri(uri: str) -> Target:
    if not isinstance(uri, str) or re.search(r"[\x00-\x1f\x7f]", uri):
        raise TaoError(
            "E_BAD_URI", "the URI is empty or contains control characters", "give a URI like s3://bucket/key"
        )
    if not uri.startswith(SCHEMES):
        raise TaoError(
            "E_BAD_URI",
            f"{uri!r} does not start with s3://, lustre:// or file://",
            "write s3://bucket/prefix/, lustre:///absolute/path or file:///absolute/path",
        )
    scheme, rest = uri.split("://", 1)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not BUCKET.match(bucket):
            raise TaoError("E_BAD_URI", f"{uri!r} has no valid bucket name", "write s3://<bucket>/<key>")
        return Target("s3", bucket=bucket, key=re.sub(r"/{2,}", "/", key).lstrip("/"))
    path = "/" + re.sub(r"/{2,}", "/", rest).strip("/")
    if ".." in path.split("/"):
        raise TaoError("E_BAD_URI", f"{uri!r} contains '..'", f"write the absolute path without '..': {scheme}:///a/b")
    return Target(scheme, path=path)  # type: ignore[arg-type]


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise TaoError("E_BAD_INPUT", f"limit {limit!r} is outside 1..{MAX_LIMIT}", "use a limit between 1 and 1000")
    return limit


def folder_uri(target: Target) -> str:
    """What a listing cursor is bound to: the folder listed, however its URI was spelled (s3://b/a = s3://b/a/)."""
    if target.scheme == "s3":
        return f"s3://{target.bucket}/{target.key.rstrip('/')}"
    return target.uri


def encode_cursor(target: Target, position: cursor.Value) -> str:
    return cursor.encode(target.scheme, folder_uri(target), position)


def decode_cursor(text: str, target: Target, position: type[cursor.Value]) -> Any:
    """Where a list_path cursor resumes; one made for another folder (or scheme) is refused, not misread."""
    made_for, value = cursor.decode(text, target.scheme, str, position)
    if made_for != folder_uri(target):
        raise cursor.bad_cursor(f"it was made for the listing of {made_for[:200]}, not of {folder_uri(target)}")
    return value


def iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).isoformat(timespec="seconds")
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def printable(name: str) -> str:
    """File names that are not valid UTF-8 arrive with surrogates; JSON cannot carry those."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def list_hint(target: Target, cursor: str | None) -> str:
    if cursor:
        return f"list_path(uri='{target.uri}', cursor='{cursor}') for the next page"
    return "check_path(uri=...) on an entry for details, or use an entry's uri as a job input"
