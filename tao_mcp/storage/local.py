"""file:// on the server host, only under the directories listed in TAO_MCP_FILE_ROOTS (os.pathsep-separated)."""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import anyio.to_thread

from tao_mcp.errors import TaoError
from tao_mcp.storage.models import PathCheck, PathEntry, PathListing
from tao_mcp.storage.uri import Target, decode_cursor, encode_cursor, iso, list_hint, printable


def allowed(target: Target, settings: Mapping[str, str]) -> Path:
    """The resolved path (symlinks followed) when it lies under an allowed root; E_PATH_NOT_ALLOWED otherwise."""
    roots_text = settings.get("TAO_MCP_FILE_ROOTS") or ""
    roots = [Path(r).expanduser().resolve() for r in roots_text.split(os.pathsep) if r.strip()]
    roots = [r for r in roots if r.is_absolute()]
    if not roots:
        raise TaoError(
            "E_PATH_NOT_ALLOWED",
            "file:// browsing is off: TAO_MCP_FILE_ROOTS is not set",
            f"set TAO_MCP_FILE_ROOTS in the server environment to the folders to expose (separated by '{os.pathsep}')",
        )
    real = Path(target.path).resolve()
    if not any(real == r or r in real.parents for r in roots):
        raise TaoError(
            "E_PATH_NOT_ALLOWED",
            f"{target.uri} is outside the folders allowed by TAO_MCP_FILE_ROOTS ({os.pathsep.join(map(str, roots))})",
            "use a path under one of them, or add its folder to TAO_MCP_FILE_ROOTS in the server environment",
        )
    return real


def _stat(path: Path, uri: str) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise TaoError("E_ACCESS_DENIED", f"the server may not read {uri}", "check the folder's permissions") from None


def _entry(target: Target, entry: os.DirEntry[str]) -> PathEntry:
    try:
        st = entry.stat()
    except OSError:  # broken symlink
        st = entry.stat(follow_symlinks=False)
    is_dir = stat.S_ISDIR(st.st_mode)
    name = printable(entry.name)
    return PathEntry(
        name=name,
        uri=target.child(name, is_dir),
        kind="dir" if is_dir else "file",
        size=None if is_dir else st.st_size,
        modified=iso(st.st_mtime),
    )


def _list(target: Target, limit: int, cursor: str | None, settings: Mapping[str, str]) -> PathListing:
    real = allowed(target, settings)
    st = _stat(real, target.uri)
    if st is None:
        raise TaoError("E_NOT_FOUND", f"nothing at {target.uri}", "check the path with list_path on its parent folder")
    if not stat.S_ISDIR(st.st_mode):
        entry = PathEntry(name=real.name, uri=target.uri, kind="file", size=st.st_size, modified=iso(st.st_mtime))
        return PathListing(uri=target.uri, entries=[entry], truncated=False, next=f"check_path(uri='{target.uri}')")
    after = str(decode_cursor(cursor, target, str)) if cursor else None
    try:
        with os.scandir(real) as it:  # bounded memory: keep only the next limit+1 names
            chosen = heapq.nsmallest(
                limit + 1, (e for e in it if after is None or e.name > after), key=lambda e: e.name
            )
    except PermissionError:
        raise TaoError(
            "E_ACCESS_DENIED", f"the server may not list {target.uri}", "check the folder's permissions"
        ) from None
    truncated = len(chosen) > limit
    chosen = chosen[:limit]
    next_cursor = encode_cursor(target, chosen[-1].name) if truncated else None
    return PathListing(
        uri=target.uri,
        entries=[_entry(target, e) for e in chosen],
        truncated=truncated,
        next_cursor=next_cursor,
        next=list_hint(target, next_cursor),
    )


def _check(target: Target, settings: Mapping[str, str]) -> PathCheck:
    real = allowed(target, settings)
    st = _stat(real, target.uri)
    if st is None:
        return PathCheck(uri=target.uri, exists=False, next="list_path on the parent folder to see what is there")
    is_dir = stat.S_ISDIR(st.st_mode)
    return PathCheck(
        uri=target.uri,
        exists=True,
        kind="dir" if is_dir else "file",
        size=None if is_dir else st.st_size,
        modified=iso(st.st_mtime),
        next=f"list_path(uri='{target.uri}')" if is_dir else f"use {target.uri} as a job input",
    )


async def list_path(target: Target, limit: int, cursor: str | None, settings: Mapping[str, str]) -> PathListing:
    return await anyio.to_thread.run_sync(lambda: _list(target, limit, cursor, settings), abandon_on_cancel=True)


async def check_path(target: Target, settings: Mapping[str, str]) -> PathCheck:
    return await anyio.to_thread.run_sync(lambda: _check(target, settings), abandon_on_cancel=True)
