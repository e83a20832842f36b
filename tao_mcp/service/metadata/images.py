"""Container image resolution: the first image an action declares (backend contract, then action record, then
model record), used as is when it looks like a URI, else looked up as a key in the bank's versions.yaml. A backend
whose image policy is `repository_derived` has no image to pull: it is built from a clean repository checkout and
the user gives its tag (`build_required`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from tao_mcp.errors import TaoError
from tao_mcp.models import ImageResolution
from tao_mcp.service.metadata.backends import Backend, select_backend, supported_actions
from tao_mcp.service.metadata.bank import bad_bank, read_mapping
from tao_mcp.service.metadata.models import ModelRecord, action_record, find_model, model_records

REPOSITORY_DERIVED = "repository_derived"


def _versions(root: Path | None) -> tuple[dict[str, Any], Path | None]:
    if root is None:
        return {}, None
    for path in (root / "versions.yaml", root / "skills" / "versions.yaml"):
        if path.is_file():
            return read_mapping(path), path
    return {}, None


def _lookup_key(versions: dict[str, Any], key: str) -> str | None:
    node: Any = versions.get("images") or {}
    parts = key.split(".")
    if parts[0] == "images":
        parts = parts[1:]
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, str) and node else None


def _image_candidates(
    record: ModelRecord, action: str, entry: dict[str, Any], chosen: Backend | None
) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if chosen is not None:
        b = f"backend_contracts.{chosen.name}"
        out += [
            (f"{b}.actions.{action}.container_image", chosen.action.get("container_image")),
            (f"{b}.actions.{action}.image", chosen.action.get("image")),
            (f"{b}.container_image", chosen.pinned.get("container_image")),
            (f"{chosen.contract_path}:container_image", chosen.contract.get("container_image")),
            (f"{chosen.contract_path}:image", chosen.contract.get("image")),
        ]
    out += [
        (f"actions.{action}.container_image", entry.get("container_image")),
        (f"actions.{action}.image", entry.get("image")),
        ("container_image", record.data.get("container_image")),
        ("image", record.data.get("image")),
    ]
    return out


def resolve_for_record(
    settings: Mapping[str, str], record: ModelRecord, action: str, entry: dict[str, Any], chosen: Backend | None
) -> ImageResolution:
    _, root = model_records(settings)
    declared = source = None
    policy: dict[str, Any] = {}
    for where, value in _image_candidates(record, action, entry, chosen):
        if value in (None, ""):
            continue
        if isinstance(value, dict) and value.get("policy") == REPOSITORY_DERIVED:
            policy, source = value, where
            break
        if not isinstance(value, str):
            raise bad_bank(Path(record.source), f"has {where} that is neither an image nor a repository_derived policy")
        declared, source = value.strip(), where
        break
    resolved_from: Literal["absolute", "versions.yaml", "unresolved_key", "repository_derived", "none"]
    override_key = "image"
    if policy:
        image, resolved_from = None, "repository_derived"
        override_key = "image_tag"  # the tag of the image the user builds (the bank's override key)
    elif declared is None:
        image, resolved_from = None, "none"
    elif "/" in declared or ":" in declared:
        image, resolved_from = declared, "absolute"
    else:
        versions, _ = _versions(root)
        image = _lookup_key(versions, declared)
        resolved_from = "versions.yaml" if image else "unresolved_key"
    target = f"submit_job(model='{record.skill}', action='{action}'"
    target += f", backend='{chosen.name}'" if chosen else ""
    if image:
        hint = f"ask the user to confirm the image {image} (or give image=<uri>), then {target}, dry_run=True)"
    elif policy:
        hint = (
            f"this backend's image is built from a clean repository checkout: ask the user for the built image "
            f"({override_key}), then {target}, image=<uri>, dry_run=True)"
        )
    else:
        hint = f"no image could be resolved: ask the user for one, then {target}, image=<uri>, dry_run=True)"
    contracts = record.data.get("backend_contracts")
    return ImageResolution(
        image=image,
        declared_image=declared,
        resolved_from=resolved_from,
        source=source,
        model=record.skill,
        network_arch=record.network_arch,
        action=action,
        backend=chosen.name if chosen else None,
        backend_reason=chosen.reason if chosen else None,
        backend_contract=chosen.contract_path or None if chosen else None,
        backends=[str(b) for b in contracts] if isinstance(contracts, dict) else [],
        build_required=bool(policy),
        override_key=override_key,
        skill_bank=str(root) if root else None,
        next=hint,
    )


def action_entry(record: ModelRecord, action: str, chosen: Backend | None) -> dict[str, Any]:
    """The model's record of an action; an action only the chosen backend contract declares (e.g. a shared
    frontend's export, run by its framework backend) has the contract's entry instead."""
    if chosen is not None and action not in record.actions:
        return {k: v for k, v in chosen.action.items() if k not in ("supported", "reason")}
    return action_record(record, action)


def select_for_action(
    record: ModelRecord, action: str, backend: str = "auto", workload: str = ""
) -> tuple[Backend | None, dict[str, Any]]:
    """The backend that runs the action (None for a single-implementation model) and the action's entry.
    `workload` (automl, hpo, ...) is a hint that may pick the backend (AutoML/HPO needs the RL backend's schema)."""
    try:
        chosen = select_backend(record, action, backend, workload)
    except TaoError:
        # an action neither the model nor any backend contract declares is reported as such, not as a refusal
        if not any(action in listed for listed in supported_actions(record).values()):
            action_record(record, action)
        raise
    return chosen, action_entry(record, action, chosen)


def resolve_image(
    settings: Mapping[str, str], model: str, action: str = "train", backend: str = "auto", workload: str = ""
) -> ImageResolution:
    record = find_model(settings, model)
    chosen, entry = select_for_action(record, action, backend, workload)
    return resolve_for_record(settings, record, action, entry, chosen)
