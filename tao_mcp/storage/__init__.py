"""Browsing the data jobs read and write: s3:// (boto3), lustre:// (over the SLURM SSH link), file:// (server host).

`list_path` pages with an opaque cursor; `check_path` says whether something exists and what it is. Failures are
coded TaoErrors (E_BAD_URI, E_NOT_FOUND, E_NO_SUCH_BUCKET, E_ACCESS_DENIED, E_MISSING_CREDENTIALS,
E_PATH_NOT_ALLOWED, E_BACKEND_UNREACHABLE, ...). boto3 is imported only when an s3:// URI is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tao_mcp.storage.lustre import LustreExec
from tao_mcp.storage.models import PathCheck, PathEntry, PathListing
from tao_mcp.storage.uri import check_limit, parse_uri

__all__ = ["LustreExec", "PathCheck", "PathEntry", "PathListing", "check_path", "list_path"]


async def list_path(
    uri: str,
    *,
    limit: int = 100,
    cursor: str | None = None,
    settings: Mapping[str, str],
    lustre_exec: LustreExec | None = None,
    lustre_roots: Sequence[str] | None = None,
) -> PathListing:
    target = parse_uri(uri)
    check_limit(limit)
    if target.scheme == "s3":
        from tao_mcp.storage import s3

        return await s3.list_path(target, limit, cursor, settings)
    if target.scheme == "lustre":
        from tao_mcp.storage import lustre

        return await lustre.list_path(target, limit, cursor, lustre_exec, lustre_roots)
    from tao_mcp.storage import local

    return await local.list_path(target, limit, cursor, settings)


async def check_path(
    uri: str,
    *,
    settings: Mapping[str, str],
    lustre_exec: LustreExec | None = None,
    lustre_roots: Sequence[str] | None = None,
) -> PathCheck:
    target = parse_uri(uri)
    if target.scheme == "s3":
        from tao_mcp.storage import s3

        return await s3.check_path(target, settings)
    if target.scheme == "lustre":
        from tao_mcp.storage import lustre

        return await lustre.check_path(target, lustre_exec, lustre_roots)
    from tao_mcp.storage import local

    return await local.check_path(target, settings)
