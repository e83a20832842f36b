"""list_path / check_path against the dev RGW (s3://), a local shell standing in for the SLURM link (lustre://),
and the server's own disk (file://). Errors are coded; secret values never appear in a listing or an error."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from tao_mcp import cursor
from tao_mcp.errors import TaoError
from tao_mcp.storage import PathListing, check_path, list_path
from tests.s3.conftest import delete_prefix

pytestmark = pytest.mark.anyio

MANY = 1500


@pytest.fixture(scope="module")
def many(s3: Any, s3_env: dict[str, str]) -> Iterator[str]:
    """1 500 objects (and two sub-folders) under a fresh prefix; returns the prefix, without a trailing slash."""
    bucket, prefix = s3_env["S3_BUCKET_NAME"], f"t-many-{uuid.uuid4().hex[:8]}"
    keys = [f"{prefix}/obj-{i:04d}.bin" for i in range(MANY)] + [f"{prefix}/sub1/a.txt", f"{prefix}/sub2/deep/b.txt"]
    with ThreadPoolExecutor(10) as pool:  # boto3's connection pool holds 10
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x" * (len(k) % 7)), keys))
    yield prefix
    delete_prefix(s3, bucket, prefix + "/")


async def collect(
    uri: str, settings: dict[str, str], limit: int = 100, **kw: Any
) -> tuple[list[PathListing], list[str]]:
    pages: list[PathListing] = []
    cursor = None
    while True:
        page = await list_path(uri, limit=limit, cursor=cursor, settings=settings, **kw)
        pages.append(page)
        assert len(page.entries) <= limit
        if not page.truncated:
            assert page.next_cursor is None
            return pages, [e.name for p in pages for e in p.entries]
        assert page.next_cursor and page.next_cursor in page.next
        cursor = page.next_cursor


async def coded(code: str, awaitable: Any, *secrets: str) -> TaoError:
    with pytest.raises(TaoError) as info:
        await awaitable
    text = str(info.value)
    assert info.value.code == code, text
    assert "Fix: " in text
    for secret in secrets:
        assert secret not in text, "a secret value appeared in an error"
    return info.value


def test_importing_storage_does_not_import_boto3() -> None:
    code = "import sys, tao_mcp.storage; sys.exit(1 if {'boto3', 'botocore'} & set(sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------- s3://


async def test_s3_pagination_over_1500_objects(many: str, s3_env: dict[str, str]) -> None:
    uri = f"s3://{s3_env['S3_BUCKET_NAME']}/{many}/"
    expected = [f"obj-{i:04d}.bin" for i in range(MANY)] + ["sub1", "sub2"]
    pages, names = await collect(uri, s3_env, limit=1000)
    assert [len(p.entries) for p in pages] == [1000, 502]
    assert sorted(names) == sorted(expected)
    pages, names = await collect(uri, s3_env)  # default limit 100
    assert len(pages) == 16 and len(names) == len(set(names)) == MANY + 2
    first = pages[0].entries[0]
    assert first.kind == "file" and first.size == len(f"{many}/obj-0000.bin") % 7
    assert first.modified and first.modified.endswith("+00:00") and first.uri == f"{uri}obj-0000.bin"
    subdirs = [e for p in pages for e in p.entries if e.kind == "dir"]
    assert [(e.name, e.uri, e.size) for e in subdirs] == [("sub1", f"{uri}sub1/", None), ("sub2", f"{uri}sub2/", None)]
    assert await list_path(f"{uri}sub2", settings=s3_env) == await list_path(f"{uri}sub2/", settings=s3_env)


async def test_s3_slashes_are_normalized(many: str, s3_env: dict[str, str]) -> None:
    bucket = s3_env["S3_BUCKET_NAME"]
    plain = await list_path(f"s3://{bucket}/{many}", limit=5, settings=s3_env)
    messy = await list_path(f"s3://{bucket}//{many}//", limit=5, settings=s3_env)
    assert [e.uri for e in plain.entries] == [e.uri for e in messy.entries]
    assert len(plain.entries) == 5 and plain.truncated
    check = await check_path(f"s3://{bucket}//{many}//sub2//deep//b.txt", settings=s3_env)
    assert check.exists and check.kind == "file" and check.uri == f"s3://{bucket}/{many}/sub2/deep/b.txt"


async def test_s3_check_path(many: str, s3_env: dict[str, str]) -> None:
    bucket = s3_env["S3_BUCKET_NAME"]
    f = await check_path(f"s3://{bucket}/{many}/sub1/a.txt", settings=s3_env)
    assert (f.exists, f.kind, f.size) == (True, "file", len(f"{many}/sub1/a.txt") % 7) and f.modified
    for uri in (f"s3://{bucket}/{many}/sub2", f"s3://{bucket}/{many}/sub2/"):
        d = await check_path(uri, settings=s3_env)
        assert (d.exists, d.kind, d.size, d.uri) == (True, "dir", None, f"s3://{bucket}/{many}/sub2/")
        assert "list_path" in d.next
    gone = await check_path(f"s3://{bucket}/{many}/nope.txt", settings=s3_env)
    assert (gone.exists, gone.kind) == (False, None) and "list_path" in gone.next
    root = await check_path(f"s3://{bucket}", settings=s3_env)
    assert (root.exists, root.kind) == (True, "dir")
    single = await list_path(f"s3://{bucket}/{many}/sub1/a.txt", settings=s3_env)
    assert [(e.name, e.kind) for e in single.entries] == [("a.txt", "file")] and not single.truncated


async def test_s3_missing_bucket_and_key_are_coded(many: str, s3_env: dict[str, str]) -> None:
    bucket = s3_env["S3_BUCKET_NAME"]
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/x/"
    await coded("E_NO_SUCH_BUCKET", list_path(missing, settings=s3_env))
    await coded("E_NO_SUCH_BUCKET", check_path(missing + "file.bin", settings=s3_env))
    await coded("E_NO_SUCH_BUCKET", check_path(missing.rsplit("/x/", 1)[0], settings=s3_env))
    await coded("E_NOT_FOUND", list_path(f"s3://{bucket}/{many}/nope/", settings=s3_env))
    await coded("E_NOT_FOUND", list_path(f"s3://{bucket}/{many}/nope.bin", settings=s3_env))


async def test_s3_access_denied_never_shows_the_secret(many: str, s3_env: dict[str, str]) -> None:
    bucket = s3_env["S3_BUCKET_NAME"]
    wrong = {**s3_env, "SECRET_KEY": f"canary-wrong-secret-{uuid.uuid4().hex[:8]}"}
    secrets = (wrong["SECRET_KEY"], s3_env["SECRET_KEY"], s3_env["ACCESS_KEY"])
    await coded("E_ACCESS_DENIED", list_path(f"s3://{bucket}/{many}/", settings=wrong), *secrets)
    await coded("E_ACCESS_DENIED", check_path(f"s3://{bucket}/{many}/sub1/a.txt", settings=wrong), *secrets)
    await coded("E_ACCESS_DENIED", check_path(f"s3://{bucket}", settings=wrong), *secrets)
    private = s3_env.get("S3_PRIVATE_BUCKET_NAME") or pytest.fail("run scripts/dev/s3 up (no private bucket)")
    await coded("E_ACCESS_DENIED", list_path(f"s3://{private}/", settings=s3_env), *secrets)


async def test_s3_missing_credentials_name_the_variables(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = s3_env["S3_BUCKET_NAME"]
    half = {k: v for k, v in s3_env.items() if k != "SECRET_KEY"}
    err = await coded("E_MISSING_CREDENTIALS", list_path(f"s3://{bucket}/", settings=half), s3_env["ACCESS_KEY"])
    assert "SECRET_KEY" in str(err)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    none = {k: v for k, v in s3_env.items() if k not in ("ACCESS_KEY", "SECRET_KEY")}
    err = await coded("E_MISSING_CREDENTIALS", check_path(f"s3://{bucket}/x", settings=none))
    assert "ACCESS_KEY" in str(err) and "SECRET_KEY" in str(err)


async def test_s3_unreachable_endpoint(s3_env: dict[str, str]) -> None:
    down = {**s3_env, "S3_ENDPOINT_URL": "http://127.0.0.1:1"}
    await coded("E_BACKEND_UNREACHABLE", list_path("s3://bucket/x/", settings=down), s3_env["SECRET_KEY"])


async def test_s3_listings_carry_no_secret(many: str, s3_env: dict[str, str]) -> None:
    pages, _ = await collect(f"s3://{s3_env['S3_BUCKET_NAME']}/{many}/", s3_env, limit=1000)
    text = "".join(p.model_dump_json() for p in pages)
    assert s3_env["SECRET_KEY"] not in text and s3_env["ACCESS_KEY"] not in text


async def test_bad_uris_cursors_and_limits(s3_env: dict[str, str]) -> None:
    bucket = s3_env["S3_BUCKET_NAME"]
    for uri in ("", "gs://b/x", "s3://", "s3:///key", "/abs/path", "lustre:///a/../b", "file:///x\n/y"):
        await coded("E_BAD_URI", list_path(uri, settings=s3_env))
    for bad in ("garbage", "f.YWJj", "_w", "gICA", cursor.encode("file", f"s3://{bucket}", "x")):
        await coded("E_BAD_INPUT", list_path(f"s3://{bucket}/", cursor=bad, settings=s3_env))
    other = cursor.encode("s3", f"s3://{bucket}/elsewhere", "token")
    await coded("E_BAD_INPUT", list_path(f"s3://{bucket}/", cursor=other, settings=s3_env))
    for limit in (0, 1001, -5):
        await coded("E_BAD_INPUT", list_path(f"s3://{bucket}/", limit=limit, settings=s3_env))


# ---------------------------------------------------------------- file:// (server host, allowed roots only)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "data" / "sub").mkdir(parents=True)
    for i in range(250):
        (root / "data" / f"f{i:03d}.txt").write_text("x" * i)
    (root / "data" / "name with space\tand tab").write_text("t")
    (tmp_path / "secret-outside").mkdir()
    (root / "data" / "escape").symlink_to(tmp_path / "secret-outside")
    return root


async def test_file_listing_pages_under_allowed_roots(tree: Path) -> None:
    settings = {"TAO_MCP_FILE_ROOTS": f"/nonexistent{os.pathsep}{tree}"}
    pages, names = await collect(f"file://{tree}/data", settings, limit=100)
    assert [len(p.entries) for p in pages] == [100, 100, 53]
    assert len(names) == len(set(names)) == 253 and "name with space\tand tab" in names
    entries = {e.name: e for p in pages for e in p.entries}
    assert (entries["f010.txt"].kind, entries["f010.txt"].size) == ("file", 10) and entries["f010.txt"].modified
    assert (entries["sub"].kind, entries["sub"].size, entries["sub"].uri) == ("dir", None, f"file://{tree}/data/sub")
    messy = await list_path(f"file:////{str(tree).lstrip('/')}//data//", limit=3, settings=settings)
    assert [e.name for e in messy.entries] == names[:3]
    f = await check_path(f"file://{tree}/data/f005.txt", settings=settings)
    assert (f.exists, f.kind, f.size) == (True, "file", 5)
    assert not (await check_path(f"file://{tree}/data/none", settings=settings)).exists
    await coded("E_NOT_FOUND", list_path(f"file://{tree}/data/none", settings=settings))
    single = await list_path(f"file://{tree}/data/f001.txt", settings=settings)
    assert [(e.name, e.size) for e in single.entries] == [("f001.txt", 1)]


async def test_file_access_outside_roots_is_refused(tree: Path) -> None:
    await coded("E_PATH_NOT_ALLOWED", list_path(f"file://{tree}/data", settings={}))
    settings = {"TAO_MCP_FILE_ROOTS": str(tree / "data" / "sub")}
    await coded("E_PATH_NOT_ALLOWED", list_path(f"file://{tree}/data", settings=settings))
    await coded("E_PATH_NOT_ALLOWED", check_path("file:///etc/passwd", settings=settings))
    settings = {"TAO_MCP_FILE_ROOTS": str(tree)}
    await coded("E_PATH_NOT_ALLOWED", list_path(f"file://{tree}/data/escape", settings=settings))  # symlink out


# ---------------------------------------------------------------- lustre:// (over the SLURM link; a local shell here)


ANYWHERE = ["/"]  # browse roots that allow every folder (the limits have a test of their own)


class LocalLink:
    """Stands in for the SLURM SSH link: runs the command in a local shell, records how much came back."""

    def __init__(self, user: str | None = None) -> None:
        self.user = user
        self.largest = 0

    async def __call__(self, script: str) -> tuple[int, str, str]:
        argv = ["bash", "-c", script]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = await anyio.run_process(argv, check=False)
        self.largest = max(self.largest, len(done.stdout))
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


async def test_lustre_listing_is_windowed_on_the_remote_side(tree: Path, tmp_path: Path) -> None:
    link = LocalLink()
    pages, names = await collect(f"lustre://{tree}/data", {}, limit=100, lustre_exec=link, lustre_roots=ANYWHERE)
    assert [len(p.entries) for p in pages] == [100, 100, 53]
    assert names == sorted(names, key=str.encode)
    assert len(set(names)) == 253 and "name with space\tand tab" in names
    entries = {e.name: e for p in pages for e in p.entries}
    assert (entries["f042.txt"].size, entries["sub"].kind, entries["escape"].kind) == (42, "dir", "dir")
    assert entries["sub"].uri == f"lustre://{tree}/data/sub" and entries["f042.txt"].modified
    huge = tmp_path / "huge"
    huge.mkdir()
    for i in range(3000):
        (huge / f"entry-{i:05d}").touch()
    link.largest = 0
    page = await list_path(f"lustre:///{huge}//", limit=10, lustre_exec=link, lustre_roots=ANYWHERE, settings={})
    assert [e.name for e in page.entries] == [f"entry-{i:05d}" for i in range(10)] and page.truncated
    assert link.largest < 2000, "the whole folder travelled over the link"
    f = await check_path(f"lustre://{tree}/data/f007.txt", settings={}, lustre_exec=link, lustre_roots=ANYWHERE)
    assert (f.exists, f.kind, f.size) == (True, "file", 7)
    d = await check_path(f"lustre:///{tree}/data/", settings={}, lustre_exec=link, lustre_roots=ANYWHERE)
    assert (d.exists, d.kind, d.uri) == (True, "dir", f"lustre://{tree}/data")
    assert not (await check_path(f"lustre://{tree}/none", settings={}, lustre_exec=link, lustre_roots=ANYWHERE)).exists
    await coded("E_NOT_FOUND", list_path(f"lustre://{tree}/none", settings={}, lustre_exec=link, lustre_roots=ANYWHERE))
    single = await list_path(f"lustre://{tree}/data/f003.txt", settings={}, lustre_exec=link, lustre_roots=ANYWHERE)
    assert [(e.name, e.size) for e in single.entries] == [("f003.txt", 3)]


async def test_lustre_errors_are_coded(tree: Path) -> None:
    await coded(
        "E_ACCESS_DENIED",
        list_path(f"lustre://{tree}/data", settings={}, lustre_exec=LocalLink("nobody"), lustre_roots=ANYWHERE),
    )
    await coded(
        "E_ACCESS_DENIED",
        check_path(f"lustre://{tree}/data", settings={}, lustre_exec=LocalLink("nobody"), lustre_roots=ANYWHERE),
    )
    await coded("E_PLATFORM_NOT_AVAILABLE", list_path(f"lustre://{tree}", settings={}))

    async def broken(script: str) -> tuple[int, str, str]:
        return 255, "", "ssh: connect to host login port 22: Connection refused"

    await coded(
        "E_BACKEND_UNREACHABLE", check_path(f"lustre://{tree}", settings={}, lustre_exec=broken, lustre_roots=ANYWHERE)
    )
    for bad in ("s3.abc", "bC4x", cursor.encode("lustre", f"lustre://{tree}", "ten"), "\udcff"):
        await coded(
            "E_BAD_INPUT",
            list_path(f"lustre://{tree}", cursor=bad, settings={}, lustre_exec=LocalLink(), lustre_roots=ANYWHERE),
        )


async def test_lustre_browsing_stays_under_its_roots(tree: Path) -> None:
    link, sub = LocalLink(), [str(tree / "data" / "sub")]
    for uri in (f"lustre://{tree}/data", "lustre:///etc", f"lustre://{tree}/data/sub-not"):
        error = await coded("E_POLICY", list_path(uri, settings={}, lustre_exec=link, lustre_roots=sub))
        assert "SLURM_BROWSE_ROOTS" in str(error)
    await coded("E_POLICY", check_path("lustre:///etc/passwd", settings={}, lustre_exec=link, lustre_roots=sub))
    escape = f"lustre://{tree}/data/escape"  # a symlink to a folder outside the tree: resolved on the remote side
    await coded("E_POLICY", list_path(escape, settings={}, lustre_exec=link, lustre_roots=[str(tree)]))
    await coded("E_POLICY", list_path(f"lustre://{tree}", settings={}, lustre_exec=link, lustre_roots=[]))
    inside = await list_path(f"lustre://{tree}/data/sub", settings={}, lustre_exec=link, lustre_roots=sub)
    assert inside.uri == f"lustre://{tree}/data/sub"
    assert (await check_path(f"lustre://{tree}/data/sub", settings={}, lustre_exec=link, lustre_roots=sub)).exists
