"""lustre:///abs/path over the SLURM SSH link: one bounded shell command per call, scheme stripped.

The listing is sorted and windowed on the login node (find | sort | tail | head), so a huge folder never
travels whole; names come first in each record and the other fields are split off from the right, so tabs in
names survive (a newline in a name splits its record, which is then skipped).
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Sequence

from tao_mcp.errors import BackendUnreachable, TaoError
from tao_mcp.storage.models import PathCheck, PathEntry, PathListing
from tao_mcp.storage.uri import Target, decode_cursor, encode_cursor, iso, list_hint

LustreExec = Callable[[str], Awaitable[tuple[int, str, str]]]

# Prints one header line: STAT|<type>|<size>|<mtime>, OUTSIDE, DENIED or NOTFOUND; a listing follows for folders.
# The path is resolved on the login node (symlinks followed) and must lie under one of the browse roots.
WITHIN = (
    'p=$(realpath -m -- {path}); ok=; for r in {roots}; do r=$(realpath -m -- "$r"); r=${{r%/}}; '
    'case "$p/" in "$r"/*) ok=1;; esac; done; [ -n "$ok" ] || {{ echo OUTSIDE; exit 0; }}; '
)
STAT = (
    "s=$(LC_ALL=C stat -L -c '%F|%s|%Y' -- \"$p\" 2>&1) || "
    "{{ case $s in *'ermission denied'*) echo DENIED;; *) echo NOTFOUND;; esac; exit 0; }}; echo \"STAT|$s\""
)
LISTING = (
    '; case $s in directory*) ;; *) exit 0;; esac; [ -r "$p" ] && [ -x "$p" ] || {{ echo DENIED; exit 0; }}; '
    "find \"$p/\" -mindepth 1 -maxdepth 1 -printf '%f\\t%Y\\t%s\\t%T@\\n' 2>/dev/null "
    "| LC_ALL=C sort | tail -n +{start} | head -n {count}"
)


def stat_script(target: Target, lustre_exec: LustreExec | None, roots: Sequence[str] | None) -> str:
    if lustre_exec is not None and not roots:
        raise TaoError(
            "E_POLICY",
            f"lustre:// browsing has no allowed folders, so {target.uri} is refused",
            "set SLURM_BROWSE_ROOTS in the server environment to the cluster folders to expose",
        )
    quoted = " ".join(shlex.quote(r) for r in roots or ())
    return (WITHIN + STAT).format(path=shlex.quote(target.path), roots=quoted)


async def run(
    lustre_exec: LustreExec | None, script: str, target: Target, roots: Sequence[str] | None = None
) -> list[str]:
    if lustre_exec is None:
        raise TaoError(
            "E_PLATFORM_NOT_AVAILABLE",
            f"{target.uri} is read over the SLURM SSH link, which is not configured",
            "set the SLURM credentials (list_platforms(platform='slurm') names them), then retry",
        )
    rc, out, err = await lustre_exec(script)
    lines = out.split("\n")
    header = lines[0].strip()
    if rc != 0 or not header:
        tail = " ".join(err.strip().splitlines()[-2:])[:300]
        raise BackendUnreachable("slurm", f"reading {target.uri} failed (exit {rc}): {tail or 'no output'}")
    if header == "OUTSIDE":
        raise TaoError(
            "E_POLICY",
            f"{target.uri} is outside the folders lustre:// may browse ({', '.join(roots or ())})",
            "use a path under one of them, or add its folder to SLURM_BROWSE_ROOTS in the server environment",
        )
    if header == "DENIED":
        raise TaoError("E_ACCESS_DENIED", f"the SLURM user may not read {target.uri}", "check the folder's permissions")
    return lines


def stat_fields(header: str) -> tuple[bool, int, float] | None:
    """'STAT|directory|4096|1700000000' -> (is_dir, size, mtime); None for NOTFOUND."""
    if header == "NOTFOUND":
        return None
    _, kind, size, mtime = header.split("|", 3)
    return kind == "directory", int(size), float(mtime)


async def list_path(
    target: Target, limit: int, cursor: str | None, lustre_exec: LustreExec | None, roots: Sequence[str] | None
) -> PathListing:
    offset = int(decode_cursor(cursor, target, int)) if cursor else 0
    script = stat_script(target, lustre_exec, roots) + LISTING.format(start=offset + 1, count=limit + 1)
    lines = await run(lustre_exec, script, target, roots)
    fields = stat_fields(lines[0].strip())
    if fields is None:
        raise TaoError("E_NOT_FOUND", f"nothing at {target.uri}", "check the path with list_path on its parent folder")
    is_dir, size, mtime = fields
    if not is_dir:
        name = target.path.rsplit("/", 1)[-1]
        entry = PathEntry(name=name, uri=target.uri, kind="file", size=size, modified=iso(mtime))
        return PathListing(uri=target.uri, entries=[entry], truncated=False, next=f"check_path(uri='{target.uri}')")
    records = [line for line in lines[1:] if line.count("\t") >= 3]
    truncated = len(records) > limit
    entries = []
    for record in records[:limit]:
        name, kind, nbytes, modified = record.rsplit("\t", 3)
        child_dir = kind == "d"
        entries.append(
            PathEntry(
                name=name,
                uri=target.child(name, child_dir),
                kind="dir" if child_dir else "file",
                size=None if child_dir else int(nbytes),
                modified=iso(float(modified)),
            )
        )
    next_cursor = encode_cursor(target, offset + limit) if truncated else None
    return PathListing(
        uri=target.uri,
        entries=entries,
        truncated=truncated,
        next_cursor=next_cursor,
        next=list_hint(target, next_cursor),
    )


async def check_path(target: Target, lustre_exec: LustreExec | None, roots: Sequence[str] | None) -> PathCheck:
    lines = await run(lustre_exec, stat_script(target, lustre_exec, roots), target, roots)
    fields = stat_fields(lines[0].strip())
    if fields is None:
        return PathCheck(uri=target.uri, exists=False, next="list_path on the parent folder to see what is there")
    is_dir, size, mtime = fields
    return PathCheck(
        uri=target.uri,
        exists=True,
        kind="dir" if is_dir else "file",
        size=None if is_dir else size,
        modified=iso(mtime),
        next=f"list_path(uri='{target.uri}')" if is_dir else f"use {target.uri} as a job input",
    )
