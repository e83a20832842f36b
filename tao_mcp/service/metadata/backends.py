"""A model's implementations (backend_contracts, e.g. pytorch and tensorrt) and which one runs an action:
the one asked for, else backend_selection's default, else the first whose contract supports the action."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao_mcp.errors import TaoError
from tao_mcp.service.metadata.bank import bad_bank, read_mapping
from tao_mcp.service.metadata.models import ModelRecord


@dataclass(frozen=True)
class Backend:
    name: str
    reason: str
    action: dict[str, Any]  # the contract's entry for the action (may override command, image, ...)
    pinned: dict[str, Any]  # the backend_contracts mapping entry ({path, container_image}) when a mapping
    contract: dict[str, Any]
    contract_path: str


def _contract(record: ModelRecord, name: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    entry = record.data["backend_contracts"][name]
    pinned = entry if isinstance(entry, dict) else {}
    rel = entry if isinstance(entry, str) else pinned.get("path")
    if not rel:
        return {}, pinned, ""
    if record.directory is None:
        return {}, pinned, str(rel)
    for base in (record.directory, record.directory / "references"):
        path = base / str(rel)
        if path.is_file():
            return read_mapping(path), pinned, str(rel)
    raise bad_bank(Path(record.source), f"names the backend contract {rel} for {name}, which does not exist")


def _support(contract: dict[str, Any], name: str, action: str) -> tuple[bool, str, dict[str, Any]]:
    actions = contract.get("actions")
    if actions is None and isinstance(contract.get("supported_actions"), list):
        actions = contract["supported_actions"]
    if isinstance(actions, list):
        return (action in actions), f"the {name} backend does not support {action}", {}
    if not isinstance(actions, dict):
        return True, "", {}  # a contract that lists no actions does not restrict them
    entry = actions.get(action)
    if entry is None:
        return False, f"the {name} backend contract does not list {action}", {}
    if isinstance(entry, bool):
        return entry, f"the {name} backend does not support {action}", {}
    if not isinstance(entry, dict):
        return False, f"the {name} backend contract has an unreadable entry for {action}", {}
    reason = str(entry.get("reason") or f"the {name} backend does not support {action}")
    return entry.get("supported") is True, reason, entry


def select_backend(record: ModelRecord, action: str, backend: str = "auto") -> Backend | None:
    contracts = record.data.get("backend_contracts")
    requested = (backend or "auto").strip()
    if not contracts:
        if requested.lower() in ("auto", "", "default"):
            return None
        raise TaoError(
            "E_BACKEND_UNSUPPORTED",
            f"model {record.skill} has a single implementation; backend '{requested}' does not apply",
            "omit backend (or pass backend='auto')",
        )
    if not isinstance(contracts, dict):
        raise bad_bank(Path(record.source), "has backend_contracts that is not a mapping")
    names = [str(n) for n in contracts]
    selection = record.data.get("backend_selection") or {}
    defaults = (selection.get("defaults") or {}) if isinstance(selection, dict) else {}
    if requested.lower() != "auto":
        if requested not in contracts:
            raise TaoError(
                "E_BACKEND_UNSUPPORTED",
                f"model {record.skill} has no backend '{requested}'",
                f"use one of: {', '.join(names)}, or backend='auto'",
            )
        chosen, reason = requested, "requested"
    elif isinstance(defaults, dict) and defaults.get(action) in contracts:
        chosen, reason = str(defaults[action]), f"backend_selection.defaults.{action}"
    elif isinstance(selection, dict) and selection.get("default") in contracts:
        chosen, reason = str(selection["default"]), "backend_selection.default"
    else:
        usable = [n for n in names if _support(_contract(record, n)[0], n, action)[0]]
        if not usable:
            reasons = "; ".join(_support(_contract(record, n)[0], n, action)[1] for n in names)
            raise TaoError(
                "E_BACKEND_UNSUPPORTED",
                f"no backend of {record.skill} supports {action}: {reasons}",
                f"choose another action ({', '.join(record.actions)})",
            )
        chosen = usable[0]
        reason = f"the only backend supporting {action}" if len(usable) == 1 else f"first backend supporting {action}"
    contract, pinned, rel = _contract(record, chosen)
    ok, why, entry = _support(contract, chosen, action)
    if not ok:
        others = [n for n in names if n != chosen and _support(_contract(record, n)[0], n, action)[0]]
        raise TaoError(
            "E_BACKEND_UNSUPPORTED",
            f"{record.skill} {action} on the {chosen} backend ({reason}): {why}",
            f"pass backend='{others[0]}'" if others else f"choose another action ({', '.join(record.actions)})",
        )
    return Backend(chosen, reason, entry, pinned, contract, rel)
