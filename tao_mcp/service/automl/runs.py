"""AutoML runs in the job store: one row per run, written before its engine starts, read by every AutoML tool.

The row holds what a restarted server needs to resume the run (its request, its workspace, who owns it) and
what the tools show (state, the recommendations table, the best so far). Text and JSON pass through the store's
redactor on every write, like the jobs table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tao_mcp.service.store import JobStore

DDL = """
CREATE TABLE IF NOT EXISTS automl_runs (
    run_id TEXT PRIMARY KEY,
    principal TEXT,
    state TEXT NOT NULL,                 -- running | stopping | stopped | complete | failed
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    request TEXT NOT NULL,               -- JSON: the confirmed review and what the engine is started with
    recommendations TEXT NOT NULL DEFAULT '[]',  -- JSON list: rec_id, parameters, job_id, status, metric
    message TEXT NOT NULL DEFAULT '',
    error TEXT,                          -- E_CODE: cause. Fix: ... when the run ended with an error
    stop_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS automl_runs_by_created ON automl_runs(created_at, run_id);
CREATE INDEX IF NOT EXISTS automl_runs_by_state ON automl_runs(state, created_at, run_id);
"""

OPEN_STATES = ("running", "stopping")
FINAL_STATES = ("stopped", "complete", "failed")


@dataclass
class RunRecord:
    run_id: str
    principal: str | None
    state: str
    created_at: float
    updated_at: float
    request: dict[str, Any]
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    error: str | None = None
    stop_requested: bool = False
    idempotency_key: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class AutomlRuns:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        store.ensure_table(DDL)

    def _row(self, row: Any) -> RunRecord:
        data = dict(row)
        data["request"] = json.loads(data["request"])
        data["recommendations"] = json.loads(data["recommendations"])
        data["stop_requested"] = bool(data["stop_requested"])
        return RunRecord(**data)

    def _json(self, value: Any) -> str:
        return json.dumps(self.store.redactor.data(value), sort_keys=True, default=str)

    def insert(self, record: RunRecord) -> RunRecord:
        """A new run; with an idempotency key already used, the existing run instead."""
        if record.idempotency_key:
            existing = self.by_idempotency_key(record.idempotency_key)
            if existing:
                return existing
        self.store.write(
            "INSERT OR IGNORE INTO automl_runs (run_id, principal, state, created_at, updated_at, request, "
            "recommendations, message, error, stop_requested, idempotency_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.run_id,
                record.principal,
                record.state,
                record.created_at,
                record.updated_at,
                self._json(record.request),
                self._json(record.recommendations),
                self.store.redactor.text(record.message),
                record.error,
                int(record.stop_requested),
                record.idempotency_key,
            ),
        )
        if record.idempotency_key:
            return self.by_idempotency_key(record.idempotency_key) or record
        return record

    def get(self, run_id: str) -> RunRecord | None:
        rows = self.store.fetch("SELECT * FROM automl_runs WHERE run_id = ?", (run_id,))
        return self._row(rows[0]) if rows else None

    def by_idempotency_key(self, key: str) -> RunRecord | None:
        rows = self.store.fetch("SELECT * FROM automl_runs WHERE idempotency_key = ?", (key,))
        return self._row(rows[0]) if rows else None

    def unfinished(self) -> list[RunRecord]:
        marks = ", ".join("?" * len(OPEN_STATES))
        rows = self.store.fetch(f"SELECT * FROM automl_runs WHERE state IN ({marks}) ORDER BY created_at", OPEN_STATES)
        return [self._row(r) for r in rows]

    def page(
        self, *, limit: int, before: tuple[float, str] | None, owned_by: tuple[bool, str | None]
    ) -> list[RunRecord]:
        sql, params = "SELECT * FROM automl_runs WHERE 1=1", list[Any]()
        if owned_by[0]:
            sql += " AND principal IS ?"
            params.append(owned_by[1])
        if before:
            sql += " AND (created_at, run_id) < (?, ?)"
            params += list(before)
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
        params.append(limit)
        return [self._row(r) for r in self.store.fetch(sql, params)]

    def set_recommendations(self, run_id: str, recommendations: list[dict[str, Any]], message: str) -> None:
        self.store.write(
            "UPDATE automl_runs SET recommendations = ?, message = ?, updated_at = ? WHERE run_id = ?",
            (self._json(recommendations), self.store.redactor.text(message), time.time(), run_id),
        )

    def request_stop(self, run_id: str) -> None:
        self.store.write(
            "UPDATE automl_runs SET stop_requested = 1, updated_at = ?, "
            "state = CASE WHEN state = 'running' THEN 'stopping' ELSE state END WHERE run_id = ?",
            (time.time(), run_id),
        )

    def finish(self, run_id: str, state: str, message: str, error: str | None = None) -> None:
        """The run's final state (final states are final: a later finish changes nothing)."""
        marks = ", ".join("?" * len(FINAL_STATES))
        self.store.write(
            f"UPDATE automl_runs SET state = ?, message = ?, error = ?, updated_at = ? "
            f"WHERE run_id = ? AND state NOT IN ({marks})",
            (
                state,
                self.store.redactor.text(message),
                None if error is None else self.store.redactor.text(error),
                time.time(),
                run_id,
                *FINAL_STATES,
            ),
        )
