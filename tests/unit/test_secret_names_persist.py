"""Values forwarded with secret_env stay redacted after a restart: the store keeps the names, never values."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tao_mcp.drivers.base import Observation
from tao_mcp.service.jobs import JobService
from tao_mcp.service.redaction import MASK, Redactor
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.store import JobRecord, JobStore
from tests.helpers import launch_request

pytestmark = pytest.mark.anyio


async def test_forwarded_names_are_registered_again_on_start(tmp_path: Path) -> None:
    value = "plain-looking-value-93c1"  # a name no rule knows: only the job record says it is a secret
    settings = {"BUILD_NOTE": value}
    store = JobStore(tmp_path / "jobs.sqlite3", Redactor.from_settings(settings))
    record = JobRecord.launching(
        launch_request("j1"), platform="slurm", digest="d", command="echo", facts={"secret_names": ["BUILD_NOTE"]}
    )
    store.insert(record)
    store.apply("j1", Observation("Complete", "COMPLETED"))
    assert value not in "\n".join(sqlite3.connect(store.path).iterdump())  # names only
    store.close()

    # A new server process: a fresh redactor that does not know BUILD_NOTE until the store says so.
    redactor = Redactor.from_settings(settings)
    assert redactor.text(value) == value
    store = JobStore(tmp_path / "jobs.sqlite3", redactor)
    service = JobService(settings, store, redactor, DriverRegistry(settings))
    async with anyio.create_task_group() as tg:
        await service.start(tg)
        tg.cancel_scope.cancel()
    assert redactor.text(f"printed {value}") == f"printed {MASK}"
