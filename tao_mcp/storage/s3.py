"""s3:// listing and checks with boto3 (imported lazily: the server must start without it).

Credentials: ACCESS_KEY / SECRET_KEY from the server settings, else the standard AWS chain. Endpoint:
S3_ENDPOINT_URL (path-style addressing), region: CLOUD_REGION. Blocking calls run in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio.to_thread

from tao_mcp.cursor import bad_cursor
from tao_mcp.errors import BackendUnreachable, TaoError
from tao_mcp.storage.models import PathCheck, PathEntry, PathListing
from tao_mcp.storage.uri import Target, decode_cursor, encode_cursor, iso, list_hint

T = TypeVar("T")
_clients: dict[tuple[str, ...], Any] = {}
_lock = threading.Lock()
FIX_CREDENTIALS = "set ACCESS_KEY and SECRET_KEY in the server environment or ~/.config/tao/.env"


def client(settings: Mapping[str, str]) -> Any:
    """One cached boto3 client per endpoint/region/credentials."""
    access, secret = settings.get("ACCESS_KEY") or "", settings.get("SECRET_KEY") or ""
    if bool(access) != bool(secret):
        missing = "ACCESS_KEY" if not access else "SECRET_KEY"
        raise TaoError(
            "E_MISSING_CREDENTIALS", f"s3:// needs ACCESS_KEY, SECRET_KEY; missing: {missing}", FIX_CREDENTIALS
        )
    endpoint = settings.get("S3_ENDPOINT_URL") or None
    region = settings.get("CLOUD_REGION") or settings.get("AWS_DEFAULT_REGION") or "us-east-1"
    key = (endpoint or "", region, access, secret)
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            config = Config(
                s3={"addressing_style": "path"} if endpoint else {},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            session = boto3.session.Session()
            creds = {"aws_access_key_id": access, "aws_secret_access_key": secret} if access else {}
            _clients[key] = session.client("s3", endpoint_url=endpoint, region_name=region, config=config, **creds)
        return _clients[key]


def translate(exc: Exception, uri: str, settings: Mapping[str, str]) -> TaoError:
    """A boto3/botocore failure as a coded error. Never includes credential values."""
    from botocore import exceptions as bex

    where = settings.get("S3_ENDPOINT_URL") or "AWS S3"
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return TaoError(
            "E_MISSING_CREDENTIALS",
            "s3:// needs ACCESS_KEY, SECRET_KEY (or the standard AWS credential chain); none were found",
            FIX_CREDENTIALS,
        )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        bucket = uri[5:].split("/", 1)[0]
        if code == "NoSuchBucket":
            return TaoError(
                "E_NO_SUCH_BUCKET",
                f"the bucket {bucket!r} does not exist at {where}",
                "check the bucket name in the URI (list the bucket root with list_path(uri='s3://<bucket>/'))",
            )
        if code in ("NoSuchKey", "NotFound") or status == 404:
            return TaoError("E_NOT_FOUND", f"nothing at {uri}", "check the key with list_path on its parent folder")
        if status in (401, 403) or code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
            return TaoError(
                "E_ACCESS_DENIED",
                f"{where} refused access to {uri} ({code or status})",
                "check ACCESS_KEY and SECRET_KEY (a wrong secret gives SignatureDoesNotMatch) and the bucket policy",
            )
        if status >= 500 or status == 0:
            return BackendUnreachable("s3", f"{where} answered {code or status}", "retry; check S3_ENDPOINT_URL")
        return TaoError(
            "E_BACKEND_REJECTED", f"{where} refused the request for {uri}: {code or status}", "check the URI"
        )
    if isinstance(exc, bex.ParamValidationError):
        return TaoError("E_BAD_URI", f"{uri!r} is not a valid S3 location", "write s3://<bucket>/<key>")
    if isinstance(exc, bex.BotoCoreError):
        return BackendUnreachable("s3", f"{where}: {type(exc).__name__}", "check S3_ENDPOINT_URL and the network")
    raise exc


async def call(fn: Callable[[], T], uri: str, settings: Mapping[str, str]) -> T:
    def guarded() -> T:
        try:
            return fn()
        except Exception as exc:
            if isinstance(exc, TaoError):
                raise
            raise translate(exc, uri, settings) from None

    return await anyio.to_thread.run_sync(guarded, abandon_on_cancel=True)


def _prefix(key: str) -> str:
    return key if not key or key.endswith("/") else key + "/"


async def list_path(target: Target, limit: int, cursor: str | None, settings: Mapping[str, str]) -> PathListing:
    token = str(decode_cursor(cursor, target, str)) if cursor else None
    prefix = _prefix(target.key)

    def page() -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": target.bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": limit}
        if token:
            kwargs["ContinuationToken"] = token
        return client(settings).list_objects_v2(**kwargs)

    try:
        answer = await call(page, target.uri, settings)
    except TaoError as exc:
        if token and exc.code == "E_BACKEND_REJECTED":  # S3 answers InvalidArgument to a token it did not make
            raise bad_cursor("S3 refused the continuation token it carries") from None
        raise
    entries = [
        PathEntry(name=p["Prefix"][len(prefix) :].rstrip("/"), uri=f"s3://{target.bucket}/{p['Prefix']}", kind="dir")
        for p in answer.get("CommonPrefixes", [])
    ]
    marker = False
    for obj in answer.get("Contents", []):
        if obj["Key"] == prefix:
            marker = True  # a "folder" placeholder object
            continue
        name = obj["Key"][len(prefix) :]
        entries.append(
            PathEntry(
                name=name,
                uri=f"s3://{target.bucket}/{obj['Key']}",
                kind="file",
                size=obj.get("Size"),
                modified=iso(obj.get("LastModified")),
            )
        )
    entries.sort(key=lambda e: e.uri)
    next_cursor = None
    if answer.get("IsTruncated") and answer.get("NextContinuationToken"):
        next_cursor = encode_cursor(target, answer["NextContinuationToken"])
    if not entries and not marker and not token and target.key:
        if not target.key.endswith("/"):
            found = await check_path(target, settings)
            if found.exists and found.kind == "file":
                entry = PathEntry(
                    name=target.key.rsplit("/", 1)[-1],
                    uri=target.uri,
                    kind="file",
                    size=found.size,
                    modified=found.modified,
                )
                return PathListing(
                    uri=target.uri, entries=[entry], truncated=False, next=f"check_path(uri='{target.uri}')"
                )
        raise TaoError(
            "E_NOT_FOUND",
            f"nothing at {target.uri} (no object and no objects under {prefix!r})",
            f"list the parent folder: list_path(uri='s3://{target.bucket}/{parent(target.key)}')",
        )
    folder = Target("s3", bucket=target.bucket, key=prefix)
    return PathListing(
        uri=folder.uri,
        entries=entries,
        truncated=next_cursor is not None,
        next_cursor=next_cursor,
        next=list_hint(folder, next_cursor),
    )


def parent(key: str) -> str:
    stripped = key.rstrip("/")
    return stripped.rsplit("/", 1)[0] + "/" if "/" in stripped else ""


async def check_path(target: Target, settings: Mapping[str, str]) -> PathCheck:
    from botocore.exceptions import ClientError

    s3 = client(settings)
    if not target.key:

        def head_bucket() -> None:
            try:
                s3.head_bucket(Bucket=target.bucket)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:  # HEAD has no error code
                    exc.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
                raise

        await call(head_bucket, target.uri, settings)
        return PathCheck(uri=target.uri, exists=True, kind="dir", next=f"list_path(uri='{target.uri}')")
    if not target.key.endswith("/"):

        def head() -> dict[str, Any] | None:
            try:
                return s3.head_object(Bucket=target.bucket, Key=target.key)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise

        meta = await call(head, target.uri, settings)
        if meta is not None:
            return PathCheck(
                uri=target.uri,
                exists=True,
                kind="file",
                size=meta.get("ContentLength"),
                modified=iso(meta.get("LastModified")),
                next=f"use {target.uri} as a job input",
            )
    prefix = _prefix(target.key)
    # A missing bucket surfaces here as NoSuchBucket (HEAD object cannot tell it from a missing key).
    answer = await call(
        lambda: s3.list_objects_v2(Bucket=target.bucket, Prefix=prefix, MaxKeys=1), target.uri, settings
    )
    if answer.get("KeyCount", len(answer.get("Contents", []))):
        dir_uri = f"s3://{target.bucket}/{prefix}"
        return PathCheck(uri=dir_uri, exists=True, kind="dir", next=f"list_path(uri='{dir_uri}')")
    return PathCheck(
        uri=target.uri,
        exists=False,
        next=f"list_path(uri='s3://{target.bucket}/{parent(target.key)}') to see what is there",
    )
