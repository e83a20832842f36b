"""TAO model records: the skill bank's skills/models/<skill>/references/skill_info.yaml (with the bank's
schemas.manifest.json entry and the model's schemas/manifest.json), or the built-in tao_mcp/data/models.yaml when the
bank has none; lookup and listing.

A model's actions are those its skill_info.yaml declares plus those the bank-wide schemas.manifest.json and the
model's schemas/manifest.json list (as the bank's list_tao_models.py reads them); only declared ones carry a
command, so only they run through submit_job(model=..., action=...)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tao_mcp.errors import TaoError
from tao_mcp.service.metadata.bank import bad_bank, bank_root, read_file, read_mapping


@dataclass(frozen=True)
class ModelRecord:
    skill: str  # the skill directory name
    data: dict[str, Any]
    directory: Path | None  # None for built-in records
    source: str  # "built-in" or the skill_info.yaml path
    manifest: dict[str, Any] = field(default_factory=dict)  # this model's entry in schemas.manifest.json

    @property
    def network_arch(self) -> str:
        return str(self.data.get("network_arch") or self.manifest.get("network_arch") or self.skill)

    @property
    def actions(self) -> dict[str, Any]:
        actions = self.data.get("actions") or {}
        if not isinstance(actions, dict):
            raise bad_bank(Path(self.source), "has actions that is not a mapping")
        return actions

    @property
    def automl_enabled(self) -> bool:
        """true when absent; yes/on/1/true (any case) as the bank's helper reads a bool-ish value."""
        value = self.data.get("automl_enabled", self.manifest.get("automl_enabled"))
        if value is None or isinstance(value, bool):
            return value is not False
        return str(value).strip().lower() in {"1", "true", "yes", "on"}

    @property
    def schema_manifest(self) -> dict[str, Any]:
        """schemas/manifest.json of this model ({} when absent or unreadable: it only adds actions and notes)."""
        path = self.directory / "schemas" / "manifest.json" if self.directory else None
        if path is None or not path.is_file():
            return {}
        with contextlib.suppress(TaoError):
            return read_mapping(path)
        return {}

    def action_names(self) -> list[str]:
        """Declared actions in their order, then the ones only the schema manifests list (sorted)."""
        listed = self.manifest.get("actions")
        extra = {str(a) for a in listed} if isinstance(listed, list) else set()
        per_model = self.schema_manifest.get("actions")
        if isinstance(per_model, dict):  # {action: {spec_template, automl_default_parameters, ...}}
            extra |= {str(a) for a in per_model}
        declared = [str(a) for a in self.actions]
        return declared + sorted(extra - set(declared))

    def automl_parameters(self, action: str) -> list[str]:
        """automl_default_parameters: the model's schema manifest entry for the action, else the schema file."""
        listed = self.schema_manifest.get("actions")
        entry = listed.get(action) if isinstance(listed, dict) else None
        if isinstance(entry, dict):
            value = entry.get("automl_default_parameters")
        else:
            path = self.directory / "schemas" / f"{action}.schema.json" if self.directory else None
            schema: Any = {}
            if path is not None and self.schema_state(action)[1]:
                schema = read_file(path)
            value = schema.get("automl_default_parameters")
        return [str(v) for v in value] if isinstance(value, list) else []

    def automl_reason(self, action: str) -> str | None:
        """Why the action is not AutoML-capable (None when it is), in the bank helper's words."""
        if not self.automl_enabled:
            return "automl_enabled is false in model metadata"
        if self.data.get("automl_blocked_reason"):
            return str(self.data["automl_blocked_reason"])
        status = self.schema_status(action)
        return f"schemas/{action}.schema.json {status}" if status else None

    def match_keys(self) -> set[str]:
        keys = [self.skill, self.data.get("network_arch"), self.data.get("model"), self.data.get("name")]
        for extra in ("aliases", "huggingface_model_ids"):
            value = self.data.get(extra) or []
            keys += [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
        return {str(k).strip().lower() for k in keys if k}

    def schema_state(self, action: str) -> tuple[bool, bool]:
        """(packaged, valid) of schemas/<action>.schema.json."""
        status = self.schema_status(action)
        return status != "is not packaged", status is None

    def schema_status(self, action: str) -> str | None:
        """What is wrong with schemas/<action>.schema.json (the bank helper's words), None when it is valid."""
        path = self.directory / "schemas" / f"{action}.schema.json" if self.directory else None
        if path is None or not path.is_file():
            return "is not packaged"
        try:
            return None if isinstance(read_file(path), dict) else "must contain a JSON object"
        except TaoError:
            return "is invalid JSON"

    def schema_failure(self, action: str) -> str | None:
        failures = self.manifest.get("failures") or {}
        if self.directory is not None:
            local = self.directory / "schemas" / "manifest.json"
            if local.is_file():
                with contextlib.suppress(TaoError):  # an unreadable manifest only loses failure notes
                    failures = {**failures, **(read_mapping(local).get("failures") or {})}
        value = failures.get(action) if isinstance(failures, dict) else None
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)[:300]

    def automl_capable(self, action: str) -> bool:
        return self.automl_reason(action) is None

    def template_path(self, action: str) -> Path | None:
        if self.directory is None:
            return None
        path = self.directory / "references" / f"spec_template_{action}.yaml"
        return path if path.is_file() else None


@cache
def _builtin_models() -> tuple[ModelRecord, ...]:
    data = yaml.safe_load(resources.files("tao_mcp.data").joinpath("models.yaml").read_text())
    return tuple(ModelRecord(skill, record, None, "built-in") for skill, record in data["models"].items())


def model_records(settings: Mapping[str, str]) -> tuple[tuple[ModelRecord, ...], Path | None]:
    """The bank's model records (and the bank root), or the built-in ones (and None) when it has none."""
    root = bank_root(settings)
    models_dir = root / "skills" / "models" if root else None
    if models_dir is None or not models_dir.is_dir():
        return _builtin_models(), None
    manifest_path = models_dir / "schemas.manifest.json"
    manifest = (read_mapping(manifest_path).get("models") or {}) if manifest_path.is_file() else {}
    if not isinstance(manifest, dict):
        raise bad_bank(manifest_path, "has models that is not a mapping")
    records = []
    for folder in sorted(models_dir.iterdir()):
        info = folder / "references" / "skill_info.yaml"
        if folder.is_dir() and info.is_file():
            entry = manifest.get(folder.name)
            records.append(
                ModelRecord(
                    folder.name, read_mapping(info), folder, str(info), entry if isinstance(entry, dict) else {}
                )
            )
    if not records:
        return _builtin_models(), None
    return tuple(records), root


def _listing(records: Iterable[ModelRecord], limit: int = 12) -> str:
    names = [r.skill for r in records]
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")


def find_model(settings: Mapping[str, str], model: str) -> ModelRecord:
    """An exact skill directory name first; else a case-insensitive match on the directory name, network_arch,
    model, name, aliases and huggingface_model_ids. None or several matches are errors listing names."""
    records, _ = model_records(settings)
    if not isinstance(model, str) or not model.strip():
        raise TaoError("E_UNKNOWN_MODEL", "no model was named", f"use one of: {_listing(records)} (see list_models)")
    for record in records:
        if record.skill == model:
            return record
    wanted = model.strip().lower()
    matches = [r for r in records if wanted in r.match_keys()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise TaoError(
            "E_UNKNOWN_MODEL",
            f"no model matches '{model}'",
            f"use one of: {_listing(records)} (see list_models)",
        )
    shown = ", ".join(f"{r.skill} (network_arch {r.network_arch})" for r in matches)
    raise TaoError(
        "E_AMBIGUOUS_MODEL",
        f"'{model}' matches {len(matches)} models: {shown}",
        f"pass the skill directory name exactly, e.g. model='{matches[0].skill}'",
    )


def action_record(record: ModelRecord, action: str) -> dict[str, Any]:
    actions = record.actions
    if action not in actions and action in record.action_names():
        raise TaoError(
            "E_UNKNOWN_ACTION",
            f"model {record.skill} lists '{action}' in its schema manifests but declares no command or image for it",
            f"run one of its declared actions ({', '.join(actions) or 'none'}), or give the whole job yourself: "
            "submit_job(command=..., image=...)",
        )
    if action not in actions:
        raise TaoError(
            "E_UNKNOWN_ACTION",
            f"model {record.skill} has no action '{action}'",
            f"use one of: {', '.join(actions) or '(none declared)'}",
        )
    entry = actions[action] or {}
    if not isinstance(entry, dict):
        raise bad_bank(Path(record.source), f"has actions.{action} that is not a mapping")
    return entry
