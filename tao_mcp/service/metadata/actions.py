"""The action plan: what submit_job(model=..., action=...) runs.

The model's action record (with the chosen backend contract's replacements) declares the command, how the spec
reaches it (mode), the data it reads and writes, and the image; the caller's specs, spec_overrides and gpu_count
are merged onto the packaged spec template. Nothing here touches a platform.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tao_mcp.entrypoint import MISSING, get_path
from tao_mcp.errors import TaoError
from tao_mcp.models import ImageResolution
from tao_mcp.service.metadata.bank import bad_bank, read_mapping
from tao_mcp.service.metadata.images import resolve_for_record, select_for_action
from tao_mcp.service.metadata.models import ModelRecord, find_model
from tao_mcp.service.metadata.overrides import (
    apply_override,
    apply_overrides,
    expanded,
    merge_nested,
    path_tokens,
    sets_path,
)

Mode = Literal["config", "args", "passthrough"]
ImageSource = Literal["override", "resolved"]
MODES: tuple[Mode, ...] = ("config", "args", "passthrough")
CONFIG_FORMATS = {"yaml": "yaml", "yml": "yaml", "json": "json", "toml": "toml"}
TAO_PYTORCH_RESUME_KEY = "train.resume_training_checkpoint_path"  # TAO PyTorch train specs resume from here


@dataclass(frozen=True)
class ActionPlan:
    model: str  # skill directory
    network_arch: str
    action: str
    backend: str | None
    command: str
    mode: Mode
    config_format: str
    inputs: dict[str, Any] | list[str]  # as declared (config/args: spec paths -> {type, optional})
    outputs: dict[str, Any] | list[str]
    upload_excludes: list[str]
    specs: dict[str, Any] | None  # config mode: template <- specs <- spec_overrides <- gpu_count (nested)
    args: dict[str, Any] | None  # args mode: template <- specs <- spec_overrides (flat)
    image: str | None
    image_source: ImageSource
    image_resolution: ImageResolution
    template: str | None  # the spec template file used as the base
    gpu_spec_key: str | None
    warnings: tuple[str, ...] = ()
    resume_key: str | None = None  # where a checkpoint goes when a restarted job resumes (runner auto-resume)

    def entrypoint_kwargs(self) -> dict[str, Any]:
        """The build_entrypoint(...) keyword arguments this plan decides (add job_id, settings, results_uri)."""
        kwargs: dict[str, Any] = {
            "command": self.command,
            "config_format": self.config_format,
            "upload_excludes": list(self.upload_excludes),
            "resume_key": self.resume_key,
            "gpus_key": self.gpu_spec_key,
        }
        if self.mode == "config":
            kwargs.update(specs=self.specs, inputs=self.inputs or None, outputs=self.outputs or None)
        elif self.mode == "args":
            kwargs.update(args=self.args, inputs=self.inputs or None, outputs=self.outputs or None)
        else:
            kwargs.update(inputs=self.inputs or None, outputs=self.outputs or None)
        return kwargs


@dataclass(frozen=True)
class Declaration:
    """What an action record declares about running it (read once, checked once)."""

    command: str
    mode: Mode
    config_format: str
    inputs: dict[str, Any] | list[str]
    outputs: dict[str, Any] | list[str]
    upload_excludes: list[Any]
    gpu_spec_key: str | None  # where gpu_count goes in the spec, if anywhere
    resume_key: str | None = None  # where a resume checkpoint goes, if anywhere


def _declaration(record: ModelRecord, action: str, entry: dict[str, Any]) -> Declaration:
    info = Path(record.source)
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise bad_bank(info, f"declares no command for actions.{action}")
    declared_mode = str(entry.get("mode") or ("config" if "{config_path}" in command else "passthrough"))
    mode = next((m for m in MODES if m == declared_mode), None)
    if mode is None:
        raise bad_bank(info, f"has actions.{action}.mode {declared_mode!r} (use config, args or passthrough)")
    config_format = CONFIG_FORMATS.get(str(entry.get("config_format") or "yaml").lower())
    if config_format is None:
        raise bad_bank(info, f"has actions.{action}.config_format {entry.get('config_format')!r}")
    inputs, outputs = entry.get("inputs") or {}, entry.get("outputs") or {}
    excludes = entry.get("upload_excludes") or []
    if not isinstance(inputs, dict | list) or not isinstance(outputs, dict | list) or not isinstance(excludes, list):
        raise bad_bank(info, f"has actions.{action} inputs/outputs/upload_excludes of the wrong type")
    # an action-level gpu_spec_key wins over the model's; an explicit null there means "no GPU count in the spec"
    gpu_key = entry["gpu_spec_key"] if "gpu_spec_key" in entry else record.data.get("gpu_spec_key")
    # the same for resume_key; undeclared, a config-mode train action resumes the TAO PyTorch way
    default_resume = TAO_PYTORCH_RESUME_KEY if action == "train" and mode == "config" else None
    resume_key = entry["resume_key"] if "resume_key" in entry else record.data.get("resume_key", default_resume)
    return Declaration(
        command,
        mode,
        config_format,
        inputs,
        outputs,
        excludes,
        str(gpu_key) if gpu_key else None,
        str(resume_key) if resume_key else None,
    )


def _check_request(specs: Any, spec_overrides: Any, gpu_count: Any) -> None:
    for value, name in ((specs, "specs"), (spec_overrides, "spec_overrides")):
        if value is not None and not isinstance(value, dict):
            raise TaoError(
                "E_BAD_INPUT", f"{name} must be an object", f"give {name} as {{'train': {{'num_epochs': 10}}}}"
            )
    if gpu_count is not None and (isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 0):
        raise TaoError("E_BAD_INPUT", f"gpu_count is {gpu_count!r}", "give gpu_count >= 0")


def _config_spec(
    template: dict[str, Any],
    declared: Declaration,
    specs: dict[str, Any],
    spec_overrides: dict[str, Any],
    gpu_count: int | None,
    warnings: list[str],
) -> dict[str, Any]:
    """Config mode: template <- specs (nested merge) <- spec_overrides (dotted keys) <- gpu_count at gpu_spec_key."""
    spec = apply_overrides(merge_nested(template, specs), spec_overrides)

    def asked(tokens: list[str | int]) -> bool:  # did the caller set it (rather than the template)?
        return sets_path(tokens, specs, expanded(spec_overrides))

    # A template's output paths (results_dir: /results) are placeholders: unless the caller set an output,
    # the runner places it under this job's results directory.
    for key in declared.outputs if isinstance(declared.outputs, dict) else ():
        tokens = path_tokens(key, f"outputs key {key}")
        if not asked(tokens) and sets_path(tokens, spec):
            apply_override(spec, key, None)
    gpu_key = declared.gpu_spec_key
    if gpu_count is not None and gpu_key:
        tokens = path_tokens(gpu_key, f"gpu_spec_key {gpu_key}")
        before = get_path(spec, tokens)
        if asked(tokens) and before not in (MISSING, gpu_count):
            warnings.append(f"{gpu_key} was {before!r} in the specs; gpu_count={gpu_count} replaces it")
        apply_override(spec, gpu_key, gpu_count)
    return spec


def _args_spec(
    template: dict[str, Any],
    declared: Declaration,
    specs: dict[str, Any],
    spec_overrides: dict[str, Any],
    gpu_count: int | None,
) -> dict[str, Any]:
    """Args mode: template <- specs <- spec_overrides <- gpu_count, all flat (the keys become --key value)."""
    args = {**template, **specs, **spec_overrides}
    if gpu_count is not None and declared.gpu_spec_key:
        args[declared.gpu_spec_key] = gpu_count
    return args


def _image(
    record: ModelRecord, action: str, image: str | None, resolution: ImageResolution
) -> tuple[str | None, ImageSource]:
    """The caller's image wins; else the resolved one, which must exist."""
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise TaoError(
                "E_BAD_INPUT", "image is empty", "give an image URI such as nvcr.io/nvidia/tao/tao-toolkit:<tag>"
            )
        return image.strip(), "override"
    if resolution.image is None:
        what = {
            "unresolved_key": f"the versions.yaml key '{resolution.declared_image}' is not defined",
            "repository_derived": f"the {resolution.backend} backend's image is built from a clean repository "
            f"checkout (its {resolution.override_key})",
        }.get(resolution.resolved_from, "no container image is declared")
        raise TaoError(
            "E_NO_IMAGE", f"{record.skill} {action}: {what}", "ask the user for the image and pass image=<uri>"
        )
    return resolution.image, "resolved"


def action_plan(
    settings: Mapping[str, str],
    model: str,
    action: str,
    specs: dict[str, Any] | None = None,
    spec_overrides: dict[str, Any] | None = None,
    gpu_count: int | None = None,
    image: str | None = None,
    backend: str = "auto",
    workload: str = "",
) -> ActionPlan:
    """What submit_job(model=..., action=...) runs: the action record's command and declarations, the spec
    (packaged template <- specs (nested merge) <- spec_overrides (dotted keys expanded) <- gpu_count at
    gpu_spec_key), and the image (the given one, else resolve_image's)."""
    record = find_model(settings, model)
    chosen, entry = select_for_action(record, action, backend, workload)
    if chosen is not None:  # a backend contract may replace parts of the action record
        entry = {**entry, **{k: v for k, v in chosen.action.items() if k not in ("supported", "reason")}}
    declared = _declaration(record, action, entry)
    _check_request(specs, spec_overrides, gpu_count)
    template_path = record.template_path(action)
    template = read_mapping(template_path) if template_path is not None else {}

    warnings: list[str] = []
    merged_specs: dict[str, Any] | None = None
    merged_args: dict[str, Any] | None = None
    if declared.mode == "config":
        merged_specs = _config_spec(template, declared, specs or {}, spec_overrides or {}, gpu_count, warnings)
        if template_path is None and not specs and not spec_overrides:
            warnings.append(f"no spec template is packaged for {record.skill} {action}: give the whole spec in specs")
    elif declared.mode == "args":
        merged_args = _args_spec(template, declared, specs or {}, spec_overrides or {}, gpu_count)
    elif specs or spec_overrides:
        raise TaoError(
            "E_BAD_INPUT",
            f"{record.skill} {action} runs in passthrough mode and takes no specs or spec_overrides",
            "drop them; pass data through inputs/outputs",
        )
    if gpu_count is not None and not declared.gpu_spec_key and declared.mode != "passthrough":
        warnings.append(f"{record.skill} declares no gpu_spec_key: the spec's GPU count was not set")

    resolution = resolve_for_record(settings, record, action, entry, chosen)
    final_image, image_source = _image(record, action, image, resolution)
    return ActionPlan(
        model=record.skill,
        network_arch=record.network_arch,
        action=action,
        backend=chosen.name if chosen else None,
        command=declared.command,
        mode=declared.mode,
        config_format=declared.config_format,
        inputs=copy.deepcopy(declared.inputs),
        outputs=copy.deepcopy(declared.outputs),
        upload_excludes=[str(p) for p in declared.upload_excludes],
        specs=merged_specs,
        args=merged_args,
        image=final_image,
        image_source=image_source,
        image_resolution=resolution,
        template=str(template_path) if template_path else None,
        gpu_spec_key=declared.gpu_spec_key,
        warnings=tuple(warnings),
        resume_key=declared.resume_key,
    )
