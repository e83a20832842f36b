"""A model's implementations (backend_contracts, e.g. pytorch and tensorrt, or cosmos-framework and cosmos-rl) and
which one runs an action, as the skill bank's own resolver decides it: the one asked for (by name or alias), else
the backend a workload needs (automl/hpo), else backend_selection's default for the action, else the first whose
contract supports it. A contract supports an action only when its actions list marks it `supported: true`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao_mcp.errors import TaoError
from tao_mcp.service.metadata.bank import bad_bank, read_mapping
from tao_mcp.service.metadata.models import ModelRecord

# Short names the bank's resolver accepts for its shared-frontend backends; a bank may add its own under
# backend_selection.aliases.
BACKEND_ALIASES = {
    "framework": "cosmos-framework",
    "cosmos_framework": "cosmos-framework",
    "rl": "cosmos-rl",
    "cosmos_rl": "cosmos-rl",
}
# Workloads that need one backend's train schema (the bank: AutoML/HPO runs on the RL backend when there is one);
# a bank may name its own under backend_selection.workloads.
WORKLOAD_BACKENDS = {"automl": "cosmos-rl", "hpo": "cosmos-rl"}
AUTO = ("auto", "", "default")


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
    """(supported, why not, the contract's entry). Only `{supported: true}` supports an action (as the bank's
    resolver reads it): a contract without an actions list supports nothing."""
    actions = contract.get("actions")
    if actions is None and isinstance(contract.get("supported_actions"), list):
        actions = contract["supported_actions"]
    if isinstance(actions, list):
        return (action in actions), f"the {name} backend does not support {action}", {}
    if not isinstance(actions, dict):
        return False, f"the {name} backend contract lists no actions (each needs supported: true)", {}
    entry = actions.get(action)
    if entry is None:
        return False, f"the {name} backend contract does not list {action}", {}
    if not isinstance(entry, dict):
        return False, f"the {name} backend contract's {action} entry is not a mapping with supported: true", {}
    reason = str(entry.get("reason") or f"the {name} backend does not support {action}")
    return entry.get("supported") is True, reason, entry


def contract_names(record: ModelRecord) -> list[str]:
    contracts = record.data.get("backend_contracts")
    if not contracts:
        return []
    if not isinstance(contracts, dict):
        raise bad_bank(Path(record.source), "has backend_contracts that is not a mapping")
    return [str(n) for n in contracts]


def supported_actions(record: ModelRecord) -> dict[str, list[str]]:
    """backend -> the actions its contract marks supported (list_models' backend matrix)."""
    out: dict[str, list[str]] = {}
    for name in contract_names(record):
        contract = _contract(record, name)[0]
        actions = contract.get("actions")
        listed = actions if isinstance(actions, dict | list) else contract.get("supported_actions") or []
        out[name] = [str(a) for a in listed if _support(contract, name, str(a))[0]]
    return out


def _selection(record: ModelRecord) -> dict[str, Any]:
    selection = record.data.get("backend_selection") or {}
    return selection if isinstance(selection, dict) else {}


def canonical_backend(record: ModelRecord, requested: str) -> str:
    """A requested backend name or alias (`rl`, `framework`, case and -/_ ignored) -> the contract name."""
    names = contract_names(record)
    aliases = {**BACKEND_ALIASES, **{str(k): str(v) for k, v in (_selection(record).get("aliases") or {}).items()}}
    wanted = aliases.get(requested.casefold(), requested)
    folded = {n.casefold().replace("_", "-"): n for n in names}
    return folded.get(wanted.casefold().replace("_", "-"), wanted)


def _workload_backend(record: ModelRecord, workload: str) -> str | None:
    declared = _selection(record).get("workloads") or {}
    table = {**WORKLOAD_BACKENDS, **(declared if isinstance(declared, dict) else {})}
    chosen = table.get(workload)
    return str(chosen) if chosen and str(chosen) in contract_names(record) else None


def select_backend(record: ModelRecord, action: str, backend: str = "auto", workload: str = "") -> Backend | None:
    names = contract_names(record)
    requested = (backend or "auto").strip()
    workload = (workload or "").strip().casefold()
    if not names:
        if requested.lower() in AUTO:
            return None
        raise TaoError(
            "E_BACKEND_UNSUPPORTED",
            f"model {record.skill} has a single implementation; backend '{requested}' does not apply",
            "omit backend (or pass backend='auto')",
        )
    selection = _selection(record)
    defaults = selection.get("defaults") or {}
    for_workload = _workload_backend(record, workload) if workload else None
    if requested.lower() not in AUTO:
        chosen = canonical_backend(record, requested)
        if chosen not in names:
            raise TaoError(
                "E_BACKEND_UNSUPPORTED",
                f"model {record.skill} has no backend '{requested}'",
                f"use one of: {', '.join(names)}, or backend='auto'",
            )
        reason = "requested"
    elif for_workload:
        chosen, reason = for_workload, f"workload {workload} needs the {for_workload} backend"
    elif isinstance(defaults, dict) and defaults.get(action) in names:
        chosen, reason = str(defaults[action]), f"backend_selection.defaults.{action}"
    elif selection.get("default") in names:
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
        fix = f"pass backend='{others[0]}'" if others and not for_workload else ""
        fix = fix or f"choose another action ({', '.join(record.actions)})"
        raise TaoError(
            "E_BACKEND_UNSUPPORTED", f"{record.skill} {action} on the {chosen} backend ({reason}): {why}", fix
        )
    return Backend(chosen, reason, entry, pinned, contract, rel)
