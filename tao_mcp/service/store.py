"""Durable job records in SQLite (WAL) with the status rules enforced in one place.

Rules (docs/ARCHITECTURE.md): the record is written before the backend is touched; status only moves
forward (terminal is final; Canceling may only become terminal); a missing exit code or end time may
still be filled in after the terminal state (accounting can lag). No secret value is ever written here:
every text the store writes passes through the redactor here, in the write path, so no caller can forget.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tao_mcp.drivers.base import JobRef, LaunchRequest, Observation
from tao_mcp.service.redaction import Redactor
from tao_mcp.states import OPEN, TERMINAL, JobState, sql_list

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    backend_name TEXT NOT NULL,
    backend_id TEXT,
    launch_state TEXT NOT NULL,          -- recorded | launching | launched | failed
    status TEXT NOT NULL,
    raw_state TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    pending_reason TEXT,
    exit_code INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    request_digest TEXT NOT NULL,
    command TEXT NOT NULL,
    image TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    request TEXT NOT NULL DEFAULT '{}',  -- non-secret request facts (resources, declared inputs/outputs)
    results_location TEXT,
    principal TEXT                       -- who submitted it over authenticated HTTP (NULL: single-user mode)
);
CREATE TABLE IF NOT EXISTS plans (      -- dry runs the user may confirm (service/plans.py)
    plan_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                  -- job | automl | workflow
    principal TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    arguments TEXT NOT NULL,             -- JSON: what the confirmed submit runs (redacted)
    files TEXT NOT NULL,                 -- JSON: name -> rendered text (redacted)
    summary TEXT NOT NULL                -- JSON: what the dry-run result showed
);
CREATE INDEX IF NOT EXISTS plans_by_created ON plans(created_at, plan_id);
"""

# One index per list filter, each ending in the list order (created_at, job_id), so a page is an index range
# scan whatever the history holds; `jobs_open` holds only open rows, so a sweep never reads finished jobs.
INDEXES = f"""
DROP INDEX IF EXISTS jobs_created;
DROP INDEX IF EXISTS jobs_open;
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs(created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_platform ON jobs(platform, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_platform_status ON jobs(platform, status, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_principal ON jobs(principal, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_principal_status ON jobs(principal, status, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_principal_platform ON jobs(principal, platform, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_principal_platform_status ON jobs(principal, platform, status, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_open_by_platform ON jobs(platform, created_at, job_id) WHERE status IN {sql_list(OPEN)};
"""

# Columns added after the first release: (name, declaration) added to an existing database at open.
MIGRATIONS = (("principal", "TEXT"),)


@dataclass
class JobRecord:
    job_id: str
    platform: str
    backend_name: str
    backend_id: str | None
    launch_state: str
    status: JobState
    raw_state: str
    message: str
    pending_reason: str | None
    exit_code: int | None
    created_at: float
    updated_at: float
    started_at: float | None
    ended_at: float | None
    cancel_requested: bool
    idempotency_key: str | None
    request_digest: str
    command: str
    image: str | None
    options: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    results_location: str | None = None
    principal: str | None = None

    @classmethod
    def launching(
        cls,
        launch: LaunchRequest,
        *,
        platform: str,
        digest: str,
        command: str,
        idempotency_key: str | None = None,
        results_location: str | None = None,
        facts: dict[str, Any] | None = None,
        principal: str | None = None,
    ) -> JobRecord:
        """A new record written before the backend is touched (launch_state 'launching', status Pending)."""
        now = time.time()
        return cls(
            job_id=launch.job_id,
            platform=platform,
            backend_name=launch.backend_name,
            backend_id=None,
            launch_state="launching",
            status=JobState.PENDING,
            raw_state="SUBMITTING",
            message="submitting",
            pending_reason=None,
            exit_code=None,
            created_at=now,
            updated_at=now,
            started_at=None,
            ended_at=None,
            cancel_requested=False,
            idempotency_key=idempotency_key,
            request_digest=digest,
            command=command,
            image=launch.image,
            options=dict(launch.options),
            request=facts or {},
            results_location=results_location,
            principal=principal,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def ref(self) -> JobRef:
        return JobRef(
            self.job_id, self.backend_name, self.backend_id, self.options, self.created_at, self.cancel_requested
        )

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        data = dict(row)
        data["options"] = json.loads(data["options"])
        data["request"] = json.loads(data["request"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        data["status"] = JobState(data["status"])
        return cls(**data)


# What a driver needs to address a job (JobRef), read by the sweeps.
REF_COLUMNS = ("job_id", "backend_name", "backend_id", "options", "created_at", "cancel_requested")
# What an observation may change.
OBSERVED_COLUMNS = ("status", "raw_state", "message", "pending_reason", "exit_code", "started_at", "ended_at")
# SQLite binds at most 32 766 parameters per statement; a sweep chunk stays far below.
_IN_BATCH = 900

# Columns that hold text a backend, a user or a job produced: redacted on every write.
TEXT_COLUMNS = ("raw_state", "message", "pending_reason", "command", "image", "results_location")
PLAN_JSON_COLUMNS = ("arguments", "files", "summary")


class JobStore:
    def __init__(self, path: Path, redactor: Redactor | None = None) -> None:
        self.path = path
        self.redactor = redactor or Redactor()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is durable against a process crash; only an OS crash may lose the last ones.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._db.executescript(INDEXES)
        path.chmod(0o600)

    def _migrate(self) -> None:
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, declaration in MIGRATIONS:
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- tables of other services (service/workflows.py) in the same database and transactions ----
    def ensure_tables(self, script: str) -> None:
        """Create a service's own tables (CREATE ... IF NOT EXISTS: an old database gains them at open)."""
        with self._lock:
            self._db.executescript(script)

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE) for a service that keeps its own rows here."""
        return self._tx()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ---- reads ----
    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.from_row(row) if row else None

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """The stored state of each of these jobs (a missing one is left out)."""
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT job_id, status FROM jobs WHERE job_id IN ({marks})", list(job_ids))
            return {row["job_id"]: JobState(row["status"]) for row in rows}

    def by_idempotency_key(self, key: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
        return JobRecord.from_row(row) if row else None

    def open_refs(self, platform: str, *, after: tuple[float, str] | None, limit: int) -> list[JobRef]:
        """One chunk of the open, launched-or-launching jobs of a platform, oldest first, after `after`.

        Only the columns a job reference needs are read, through the partial index of open rows.
        """
        sql = f"SELECT {', '.join(REF_COLUMNS)} FROM jobs WHERE platform = ? AND status IN {sql_list(OPEN)}"
        params: list[Any] = [platform]
        if after:
            sql += " AND (created_at, job_id) > (?, ?)"
            params += list(after)
        sql += " AND launch_state != 'recorded' ORDER BY created_at, job_id LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            JobRef(
                row["job_id"],
                row["backend_name"],
                row["backend_id"],
                json.loads(row["options"]),
                row["created_at"],
                bool(row["cancel_requested"]),
            )
            for row in rows
        ]

    def open_platforms(self) -> set[str]:
        """The platforms that have open jobs (one index probe per platform)."""
        with self._lock:
            rows = self._db.execute(f"SELECT DISTINCT platform FROM jobs WHERE status IN {sql_list(OPEN)}").fetchall()
        return {row["platform"] for row in rows}

    def list(
        self,
        *,
        status: JobState | None,
        platform: str | None,
        limit: int,
        before: tuple[float, str] | None,
        owned_by: tuple[bool, str | None] = (False, None),
    ) -> list[JobRecord]:
        """Newest first. `owned_by=(True, name)` keeps only the jobs of principal `name`."""
        sql, params = "SELECT * FROM jobs WHERE 1=1", list[Any]()
        if owned_by[0]:
            sql += " AND principal IS ?"
            params.append(owned_by[1])
        if status:
            sql += " AND status = ?"
            params.append(status)
        if platform:
            sql += " AND platform = ?"
            params.append(platform)
        if before:
            sql += " AND (created_at, job_id) < (?, ?)"  # a row value: the index range scan starts there
            params += list(before)
        sql += " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def forwarded_secret_names(self) -> set[str]:
        """Every server variable name a stored job forwarded with secret_env (names only, never values)."""
        with self._lock:
            rows = self._db.execute("SELECT request FROM jobs").fetchall()
        names: set[str] = set()
        for row in rows:
            names.update(json.loads(row["request"]).get("secret_names") or ())
        return names

    # ---- writes ----
    def insert(self, record: JobRecord) -> JobRecord:
        """Insert a new record; with an idempotency key already used, return the existing record instead."""
        with self._tx() as db:
            if record.idempotency_key:
                row = db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (record.idempotency_key,)).fetchone()
                if row:
                    return JobRecord.from_row(row)
            data = record.__dict__ | {
                **{col: self._clean(getattr(record, col)) for col in TEXT_COLUMNS},
                "options": json.dumps(self.redactor.data(record.options), sort_keys=True),
                "request": json.dumps(self.redactor.data(record.request), sort_keys=True),
                "cancel_requested": int(record.cancel_requested),
            }
            cols = ", ".join(data)
            db.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(data))})", list(data.values()))
        return record

    def set_launch_state(self, job_id: str, launch_state: str, backend_id: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET launch_state = ?, backend_id = COALESCE(?, backend_id), updated_at = ? "
                "WHERE job_id = ?",
                (launch_state, backend_id, time.time(), job_id),
            )

    def forget_unsent(self, job_id: str) -> None:
        """A launch that provably sent nothing: its record goes (no open job, and the idempotency key is free for a
        retry). Only a record still launching, without a backend id, is removed."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM jobs WHERE job_id = ? AND launch_state = 'launching' AND backend_id IS NULL", (job_id,)
            )

    def mark_failed_launch(self, job_id: str, message: str) -> None:
        """The backend refused the launch: nothing runs, the record ends as Error."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET launch_state = 'failed', status = ?, raw_state = 'LAUNCH_REFUSED', "
                f"message = ?, updated_at = ?, ended_at = ? WHERE job_id = ? AND status NOT IN {sql_list(TERMINAL)}",
                (JobState.ERROR, self._clean(message), time.time(), time.time(), job_id),
            )

    def request_cancel(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ?, "
                f"status = CASE WHEN status IN {sql_list(TERMINAL)} THEN status ELSE ? END WHERE job_id = ?",
                (time.time(), JobState.CANCELING, job_id),
            )

    def apply(self, job_id: str, obs: Observation) -> JobRecord | None:
        """Record an observation, enforcing monotonic status. Returns the record as stored."""
        self.apply_many({job_id: obs})
        return self.get(job_id)

    def apply_many(self, observations: Mapping[str, Observation]) -> int:
        """Record a sweep chunk's observations in one transaction; only rows that change are written.

        Returns how many rows changed. A reading that says what the store already holds writes nothing (not
        even updated_at), so a steady sweep costs one indexed read per chunk and no writes.
        """
        changed = 0
        ids = list(observations)
        # Backends repeat the same few texts (RUNNING, a pending reason): each distinct one is redacted once.
        clean = functools.lru_cache(maxsize=256)(self._clean)
        with self._tx() as db:
            for at in range(0, len(ids), _IN_BATCH):
                batch = ids[at : at + _IN_BATCH]
                rows = db.execute(
                    f"SELECT job_id, cancel_requested, {', '.join(OBSERVED_COLUMNS)} FROM jobs "
                    f"WHERE job_id IN ({', '.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                now = time.time()
                for row in rows:
                    update = self._observed_changes(row, observations[row["job_id"]], now, clean)
                    if update:
                        db.execute(
                            f"UPDATE jobs SET {', '.join(f'{col} = ?' for col in update)} WHERE job_id = ?",
                            [*update.values(), row["job_id"]],
                        )
                        changed += 1
        return changed

    def _observed_changes(
        self, row: sqlite3.Row, obs: Observation, now: float, clean: Callable[[str | None], str | None]
    ) -> dict[str, Any]:
        """The columns an observation changes on this row under the status rules (empty: nothing changes)."""
        current = JobState(row["status"])
        if current in TERMINAL:
            # Final: only fill facts that arrived late (exit code, end time).
            late = {"exit_code": obs.exit_code, "ended_at": obs.ended_at, "started_at": obs.started_at}
            return {col: value for col, value in late.items() if row[col] is None and value is not None}
        status = obs.status
        if current == JobState.CANCELING and status not in TERMINAL:
            status = JobState.CANCELING  # only a terminal observation ends a cancel in progress
        elif row["cancel_requested"] and status == JobState.ERROR and obs.raw_state.upper().startswith("CANCEL"):
            status = JobState.CANCELED
        message = obs.message
        if status == JobState.CANCELING and obs.status != JobState.CANCELING:
            message = f"cancel requested; backend still reports {obs.raw_state}"
        ended = obs.ended_at if status in TERMINAL else None
        if status in TERMINAL and ended is None:
            ended = now
        new = {
            "status": status.value,
            "raw_state": clean(obs.raw_state),
            "message": clean(message),
            "pending_reason": clean(obs.pending_reason),
            "exit_code": obs.exit_code,
            "started_at": obs.started_at if obs.started_at is not None else row["started_at"],
            "ended_at": ended,
        }
        update = {col: value for col, value in new.items() if row[col] != value}
        if update:
            update["updated_at"] = now
        return update

    def touch_message(self, job_id: str, message: str) -> None:
        """Update the human message of an open job (e.g. runner progress) without changing its status."""
        with self._tx() as db:
            db.execute(
                f"UPDATE jobs SET message = ?, updated_at = ? WHERE job_id = ? AND status NOT IN {sql_list(TERMINAL)}",
                (self._clean(message), time.time(), job_id),
            )

    # ---- plans (service/plans.py owns their meaning) ----
    def put_plan(self, row: Mapping[str, Any], *, purge_before: float) -> None:
        """Store one plan (JSON columns redacted) and drop plans that expired before `purge_before`."""
        data = dict(row) | {col: json.dumps(self.redactor.data(row[col])) for col in PLAN_JSON_COLUMNS}
        with self._tx() as db:
            db.execute("DELETE FROM plans WHERE expires_at < ?", (purge_before,))
            cols = ", ".join(data)
            db.execute(f"INSERT INTO plans ({cols}) VALUES ({', '.join('?' * len(data))})", list(data.values()))

    def get_plan(self, plan_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM plans WHERE plan_id = ?", (plan_id,)).fetchone()
        if row is None:
            return None
        return dict(row) | {col: json.loads(row[col]) for col in PLAN_JSON_COLUMNS}

    def plan_ids(
        self, *, prefix: str, kind: str | None, now: float, limit: int
    ) -> builtins.list[tuple[str, str | None]]:
        """(plan_id, principal) of unexpired plans whose id starts with `prefix`, newest first."""
        sql = "SELECT plan_id, principal FROM plans WHERE expires_at > ? AND substr(plan_id, 1, ?) = ?"
        params: builtins.list[Any] = [now, len(prefix), prefix]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY created_at DESC, plan_id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [(row["plan_id"], row["principal"]) for row in rows]

    def job_ids(self, *, prefix: str, limit: int, owned_by: tuple[bool, str | None]) -> builtins.list[str]:
        """Job ids starting with `prefix`, newest first (completions)."""
        sql = "SELECT job_id FROM jobs WHERE substr(job_id, 1, ?) = ?"
        params: builtins.list[Any] = [len(prefix), prefix]
        if owned_by[0]:
            sql += " AND principal IS ?"
            params.append(owned_by[1])
        sql += " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [row["job_id"] for row in rows]

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else self.redactor.text(text)

    # ---- tables of other services (service/automl/runs.py): their DDL, reads and writes through this lock ----
    def ensure_table(self, ddl: str, migrations: tuple[tuple[str, str, str], ...] = ()) -> None:
        """Create a service's table (CREATE ... IF NOT EXISTS) and add the (table, column, declaration) columns
        an older database lacks: the same forward-only mechanism as the jobs table."""
        with self._lock:
            self._db.executescript(ddl)
            for table, name, declaration in migrations:
                present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the rows it changed. Callers redact their values."""
        with self._tx() as db:
            return db.execute(sql, params).rowcount
