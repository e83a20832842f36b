"""The engine side of a run, in its worker thread: the lazy AutoMLRunner import, the run's workspace (the skill
copy it reads, the repair of a stuck resume) and the recommendations table read from the engine's state.

AutoMLRunner reseeds numpy's global RNG, configures logging at import and installs signal handlers on the main
thread only: it is imported here, inside the thread, with the root logger restored afterwards so nothing it
sets up can write to the server's stdout (the stdio transport).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from tao_mcp.errors import TaoError

log = logging.getLogger(__name__)
TERMINAL_RECS = {"success", "done", "failure", "error", "canceled"}


def engine_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tao_automl") is not None


def require_engine() -> None:
    if not engine_installed():
        raise TaoError(
            "E_AUTOML_NOT_INSTALLED",
            "the AutoML engine (nvidia-tao-automl) is not installed on this server",
            "pip install 'tao-mcp[automl]' and restart the server, or pass automl_policy='off' to submit_job "
            "for one plain training run",
        )


def load_runner() -> Any:
    """AutoMLRunner, imported with the root logger's handlers and level put back (its import configures them)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from tao_automl.runner import AutoMLRunner
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    for name in ("tao_automl", "tao_sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)  # per-poll INFO chatter stays out of the server log
    return AutoMLRunner


def skill_copy(workspace: Path, skill_dir: Path, image: str) -> Path:
    """The model's skill directory as the engine reads it, with the image tao-mcp resolved written in (the
    engine would otherwise resolve versions.yaml keys from the process environment)."""
    target = workspace / "skill"
    if target.exists():
        shutil.rmtree(target)
    for part in ("references", "schemas"):
        if (skill_dir / part).is_dir():
            shutil.copytree(skill_dir / part, target / part)
    info_path = target / "references" / "skill_info.yaml"
    info = yaml.safe_load(info_path.read_text()) or {}
    info["container_image"] = image
    for action in (info.get("actions") or {}).values():
        if isinstance(action, dict):
            action.pop("container_image", None)
    info_path.write_text(yaml.safe_dump(info, sort_keys=False))
    return target


def controller_path(workspace: Path, session_id: str) -> Path:
    return workspace / ".automl" / "controller" / f"{session_id}.json"


def read_recommendations(
    workspace: Path, session_id: str, launched: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """The engine's recommendations as the tools show them (empty before the engine saved any); `launched` adds
    the jobs created since the engine last saved its state."""
    try:
        recs = json.loads(controller_path(workspace, session_id).read_text())
    except (OSError, ValueError):
        return []
    out = []
    for rec in recs if isinstance(recs, list) else []:
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), int):
            continue
        status = str(rec.get("status") or "pending")
        job_id = rec.get("job_id") or (launched or {}).get(rec["id"])
        metric = rec.get("result") if status in ("success", "done") else None
        out.append(
            {
                "rec_id": rec["id"],
                "parameters": rec.get("specs") if isinstance(rec.get("specs"), dict) else {},
                "job_id": job_id or None,
                "status": "running" if status not in TERMINAL_RECS and job_id else status,
                "metric": metric if isinstance(metric, int | float) else None,
            }
        )
    return out


def repair_resume(workspace: Path, session_id: str, job_of_rec: Any, keep_cancel: bool) -> list[str]:
    """Before resuming: a recommendation the engine saved but whose job it never registered makes its resume
    wait forever. Such a recommendation adopts its job when tao-mcp launched one (found by the recommendation's
    idempotency key), else it is marked failed. A cancel intent written while the server was going away (not by
    stop_automl) is dropped, so the resumed run does not cancel its own job. Returns what was repaired."""
    path = controller_path(workspace, session_id)
    active_path = workspace / "active_jobs.json"
    if not path.is_file():
        return []
    recs = json.loads(path.read_text())
    active = json.loads(active_path.read_text()) if active_path.is_file() else []
    tracked = {entry.get("rec_id") for entry in active}
    notes: list[str] = []
    changed = False
    for rec in recs:
        if str(rec.get("status")) in TERMINAL_RECS or rec.get("id") in tracked:
            continue
        job_id = rec.get("job_id") or job_of_rec(rec["id"])
        if job_id:
            active.append({"rec_id": rec["id"], "job_id": job_id, "updated_at": rec.get("last_modified")})
            rec["job_id"] = job_id
            notes.append(f"rec {rec['id']}: adopted its job {job_id}")
        else:
            rec["status"] = "failure"
            rec["failure_reason"] = "launch_interrupted: the server stopped before the job was created"
            notes.append(f"rec {rec['id']}: marked failed (the server stopped before its job was created)")
        changed = True
    if not keep_cancel:
        for entry in active:
            if entry.pop("cancel_requested", None):
                entry.pop("cancel_requested_at", None)
                entry.pop("cancel_reason", None)
                changed = True
    if changed:
        _write_json(path, recs)
        _write_json(active_path, active)
    return notes


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".repair.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    os.replace(tmp, path)
