"""Job store rules: record before launch, monotonic status, Canceling, idempotency, late facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tao_mcp.drivers.base import Observation
from tao_mcp.service.store import JobRecord, JobStore
from tests.helpers import launch_request


def record(job_id: str = "abc123", key: str | None = None) -> JobRecord:
    request = launch_request(job_id)
    return JobRecord.launching(request, platform="slurm", digest="d", command="echo", idempotency_key=key)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite3")


def test_database_is_private_and_wal(store: JobStore) -> None:
    assert store.path.stat().st_mode & 0o077 == 0
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_terminal_status_is_final_but_late_facts_fill_in(store: JobStore) -> None:
    store.insert(record())
    store.apply("abc123", Observation("Running", "RUNNING", started_at=10.0))
    done = store.apply("abc123", Observation("Complete", "COMPLETED"))
    assert done is not None and done.status == "Complete" and done.exit_code is None
    later = store.apply("abc123", Observation("Running", "RUNNING", exit_code=0, ended_at=20.0))
    assert later is not None and later.status == "Complete" and later.raw_state == "COMPLETED"
    assert later.exit_code == 0 and later.ended_at is not None


def test_canceling_only_becomes_terminal(store: JobStore) -> None:
    store.insert(record())
    store.request_cancel("abc123")
    still = store.apply("abc123", Observation("Running", "RUNNING"))
    assert still is not None and still.status == "Canceling" and "cancel requested" in still.message
    done = store.apply("abc123", Observation("Canceled", "CANCELLED by 1000"))
    assert done is not None and done.status == "Canceled"


def test_cancel_after_terminal_keeps_terminal(store: JobStore) -> None:
    store.insert(record())
    store.apply("abc123", Observation("Error", "FAILED", exit_code=2))
    store.request_cancel("abc123")
    got = store.get("abc123")
    assert got is not None and got.status == "Error" and got.exit_code == 2


def test_idempotency_key_returns_first_record(store: JobStore) -> None:
    first = store.insert(record("one", key="k"))
    second = store.insert(record("two", key="k"))
    assert second.job_id == first.job_id == "one"
    assert store.get("two") is None


def test_open_jobs_and_paging(store: JobStore) -> None:
    for i in range(5):
        store.insert(record(f"job{i}"))
    store.apply("job0", Observation("Complete", "COMPLETED"))
    refs = store.open_refs("slurm", after=None, limit=10)
    assert {r.job_id for r in refs} == {"job1", "job2", "job3", "job4"}
    page = store.list(status=None, platform=None, limit=2, before=None)
    rest = store.list(status=None, platform=None, limit=10, before=(page[-1].created_at, page[-1].job_id))
    assert len(page) == 2 and len(rest) == 3
    assert not {r.job_id for r in page} & {r.job_id for r in rest}


def test_failed_launch_is_terminal_error(store: JobStore) -> None:
    store.insert(record())
    store.mark_failed_launch("abc123", "E_BACKEND_REJECTED: no such partition")
    got = store.get("abc123")
    assert got is not None and got.status == "Error" and got.launch_state == "failed"
    assert store.open_refs("slurm", after=None, limit=10) == [] and store.open_platforms() == set()


def test_a_database_from_before_principals_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    from tao_mcp.service.store import SCHEMA

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(_without_principal(SCHEMA))
    old.execute(
        "INSERT INTO jobs (job_id, platform, backend_name, launch_state, status, created_at, updated_at, "
        "request_digest, command) VALUES ('old1', 'slurm', 'tao-old1', 'launched', 'Complete', 1, 1, 'd', 'echo')"
    )
    old.commit()
    old.close()
    store = JobStore(path)
    assert store.get("old1") is not None and store.get("old1").principal is None
    mine = JobRecord.launching(launch_request("new1"), platform="slurm", digest="d", command="x", principal="alice")
    store.insert(mine)
    assert store.get("new1").principal == "alice"
    listed = store.list(status=None, platform=None, limit=10, before=None, owned_by=(True, "alice"))
    assert [r.job_id for r in listed] == ["new1"]
    everyone = store.list(status=None, platform=None, limit=10, before=None)
    assert {r.job_id for r in everyone} == {"old1", "new1"}
    store.close()
    JobStore(path).close()  # opening a migrated database again changes nothing


def _without_principal(schema: str) -> str:
    lines = [line for line in schema.splitlines() if not line.strip().startswith("principal ")]
    text = "\n".join(lines)
    return text.replace("results_location TEXT,", "results_location TEXT")


def test_every_text_written_is_redacted_in_the_write_path(tmp_path: Path) -> None:
    """Callers hand the store raw backend text; the sqlite file never holds a secret value."""
    import sqlite3

    from tao_mcp.service.redaction import Redactor

    secret = "store-canary-7f3e9a"
    store = JobStore(tmp_path / "jobs.sqlite3", Redactor.from_settings({"NGC_KEY": secret}))
    request = launch_request("j1", options={"note": f"x {secret}"})
    store.insert(
        JobRecord.launching(
            request, platform="slurm", digest="d", command=f"echo {secret}", facts={"why": secret, "secret_names": []}
        )
    )
    store.apply("j1", Observation("Pending", f"PENDING {secret}", message=f"NGC_KEY={secret}", pending_reason=secret))
    store.touch_message("j1", f"progress {secret}")
    store.insert(JobRecord.launching(launch_request("j2"), platform="slurm", digest="d", command="echo"))
    store.mark_failed_launch("j2", f"E_BACKEND_REJECTED: Authorization: Bearer {secret}")
    store.close()
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    dump = "\n".join(db.iterdump())
    assert secret not in dump and "[REDACTED]" in dump
    for table in ("jobs",):
        for row in db.execute(f"SELECT * FROM {table}"):
            assert all(secret not in str(v) for v in row)


def _at(store: JobStore, job_id: str, created_at: float, **columns: object) -> None:
    store.insert(record(job_id))
    sets = {"created_at": created_at, "launch_state": "launched", "backend_id": job_id, **columns}
    store._db.execute(
        f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in sets)} WHERE job_id = ?", [*sets.values(), job_id]
    )


def test_cursor_paging_is_exact_across_ties_in_created_at(store: JobStore) -> None:
    # 3 timestamps, 4 jobs each (ties), two platforms and two statuses interleaved.
    for i in range(12):
        platform = "slurm" if i % 2 else "docker"
        _at(store, f"j{i:02d}", float(i // 4), platform=platform, status="Running" if i % 3 else "Complete")
    expected_all = sorted((tuple(r) for r in store._db.execute("SELECT created_at, job_id FROM jobs")), reverse=True)
    for status, platform in ((None, None), ("Running", None), (None, "slurm"), ("Running", "slurm")):
        seen: list[str] = []
        before = None
        while True:
            page = store.list(status=status, platform=platform, limit=2, before=before)  # type: ignore[arg-type]
            seen += [r.job_id for r in page]
            if len(page) < 2:
                break
            before = (page[-1].created_at, page[-1].job_id)
        want = [
            job_id
            for _, job_id in expected_all
            if (status is None or store.get(job_id).status == status)
            and (platform is None or store.get(job_id).platform == platform)
        ]
        assert seen == want, (status, platform)


def test_list_filters_are_served_by_an_index(store: JobStore) -> None:
    cases = {
        "status = 'Running'": "jobs_by_status",
        "platform = 'slurm'": "jobs_by_platform",
        "platform = 'slurm' AND status = 'Running'": "jobs_by_platform_status",
        "principal IS 'a'": "jobs_by_principal",
        "principal IS 'a' AND status = 'Running' AND platform = 'slurm'": "jobs_by_principal_platform_status",
    }
    for where, index in cases.items():
        sql = (
            f"EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE {where} AND (created_at, job_id) < (1, 'x') "
            "ORDER BY created_at DESC, job_id DESC LIMIT 5"
        )
        plan = " ".join(row[3] for row in store._db.execute(sql))
        assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, (where, plan)


def test_open_refs_come_in_chunks_without_finished_or_unlaunched_jobs(store: JobStore) -> None:
    for i in range(7):
        _at(store, f"o{i}", float(i % 3))  # ties in created_at across chunk boundaries
    _at(store, "done", 1.0, status="Complete")
    _at(store, "queued", 1.0, launch_state="recorded")
    _at(store, "elsewhere", 1.0, platform="docker")
    chunks: list[list[str]] = []
    after = None
    while refs := store.open_refs("slurm", after=after, limit=3):
        chunks.append([r.job_id for r in refs])
        after = (refs[-1].created_at, refs[-1].job_id)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert sorted(job for chunk in chunks for job in chunk) == [f"o{i}" for i in range(7)]
    assert store.open_platforms() == {"slurm", "docker"}


def test_a_sweep_writes_only_rows_that_change(store: JobStore) -> None:
    for i in range(4):
        _at(store, f"w{i}", float(i), updated_at=5.0)
    same = Observation("Pending", "SUBMITTING", "submitting")  # what launching() stored
    running = Observation("Running", "RUNNING", started_at=10.0)
    assert store.apply_many({"w0": same, "w1": same, "w2": running, "w3": running}) == 2
    unchanged = store.get("w0")
    assert unchanged is not None and unchanged.updated_at == 5.0  # untouched: not even updated_at
    moved = store.get("w2")
    assert moved is not None and moved.status == "Running" and moved.updated_at > 5.0
    again = store.apply_many({f"w{i}": running for i in (2, 3)})
    assert again == 0  # the same reading twice writes nothing
    assert store.apply_many({"missing": running}) == 0
