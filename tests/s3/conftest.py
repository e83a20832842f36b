"""The dev S3 server (Ceph RGW from scripts/dev/s3): settings, a boto3 admin client, a unique prefix per test.

A backend that should be up and is not fails the test with the command that starts it (never a skip).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import dev_settings

START = "scripts/dev/s3 up"


def _answers(endpoint: str, deadline_s: float = 5.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(endpoint, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # an S3 error document is an answer
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    """S3_ENDPOINT_URL, ACCESS_KEY, SECRET_KEY, S3_BUCKET_NAME (+ S3_PRIVATE_BUCKET_NAME) of the running RGW."""
    env = dev_settings("s3", START)
    for name in ("S3_ENDPOINT_URL", "ACCESS_KEY", "SECRET_KEY", "S3_BUCKET_NAME"):
        if not env.get(name):
            pytest.fail(f".dev/s3.env lacks {name}: run `{START}`")
    if not _answers(env["S3_ENDPOINT_URL"]):
        pytest.fail(f"the dev S3 server at {env['S3_ENDPOINT_URL']} does not answer: run `{START}`")
    return env


def make_client(env: dict[str, str], secret: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["ACCESS_KEY"],
        aws_secret_access_key=secret or env["SECRET_KEY"],
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@pytest.fixture(scope="session")
def s3(s3_env: dict[str, str]) -> Any:
    return make_client(s3_env)


@pytest.fixture
def prefix(s3: Any, s3_env: dict[str, str]) -> Iterator[str]:
    """A fresh key prefix (no trailing slash) in the dev bucket, emptied afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    delete_prefix(s3, s3_env["S3_BUCKET_NAME"], name + "/")


def delete_prefix(s3: Any, bucket: str, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def keys_under(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix) :]] = obj["Size"]
    return found


def _harness(tmp_path: Path, s3_env: dict[str, str], s3: Any, mode: str) -> Iterator[Any]:
    from tests.s3.test_runner import Harness  # the harness runs the runner the way every platform does

    harness = Harness(tmp_path, s3_env, mode)
    yield harness
    for job_id in harness.jobs:
        delete_prefix(s3, harness.bucket, f"results/{job_id}/")


@pytest.fixture(params=["boto3", "stdlib"])
def h(request: pytest.FixtureRequest, tmp_path: Path, s3_env: dict[str, str], s3: Any) -> Iterator[Any]:
    """A runner harness, once with a Python that has boto3 and PyYAML and once with one that has neither."""
    yield from _harness(tmp_path, s3_env, s3, request.param)


@pytest.fixture
def hs(tmp_path: Path, s3_env: dict[str, str], s3: Any) -> Iterator[Any]:
    """The standard-library-only Python (no boto3, no PyYAML)."""
    yield from _harness(tmp_path, s3_env, s3, "stdlib")
