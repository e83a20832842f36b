"""Job stores of a given size, written straight into SQLite (a benchmark's setup must not take minutes)."""

from __future__ import annotations

from pathlib import Path

from tao_mcp.service.store import JobStore

PLATFORMS = ("slurm", "docker", "kubernetes", "lepton")
BASE_TIME = 1_750_000_000.0


def fill(path: Path, total: int, *, open_share: float = 0.1, platforms: tuple[str, ...] = PLATFORMS) -> JobStore:
    """A store of `total` jobs: every 1/open_share-th one Running, the rest Complete; two jobs per timestamp
    (ties in created_at are what the cursor must get right)."""
    store = JobStore(path)
    every = max(1, round(1 / open_share)) if open_share else 0

    def rows():  # type: ignore[no-untyped-def]
        for i in range(total):
            running = bool(every) and i % every == 0
            yield (
                f"b{i:08d}",
                platforms[i % len(platforms)],
                f"tao-b{i:08d}",
                str(1_000_000 + i),
                "launched",
                "Running" if running else "Complete",
                "RUNNING" if running else "COMPLETED",
                BASE_TIME + i // 2,
                BASE_TIME + i // 2,
                "d",
                f"python train.py --run {i}",
            )

    with store._lock:
        db = store._db
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO jobs (job_id, platform, backend_name, backend_id, launch_state, status, raw_state, "
            "created_at, updated_at, request_digest, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
        db.execute("COMMIT")
    return store
