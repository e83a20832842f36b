"""The review of an AutoML run: what it will launch, shown to the user before the first GPU job starts.

Pure functions over the model's packaged train schema and the request: the search space with its ranges
(the schema's AutoML-enabled leaves, or the hyperparameters asked for, narrowed by param_ranges) and the
upper bound of GPU-hours it may spend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tao_mcp.errors import TaoError
from tao_mcp.models import AutomlParameter

TYPES = {"number": "float", "float": "float", "integer": "integer", "int": "integer", "boolean": "bool"}
LOSS_WORDS = ("loss", "error", "err", "wer", "cer", "perplexity", "mse", "mae")


def schema_leaves(schema: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted key, leaf) for every scalar leaf of a JSON schema's nested properties."""
    for name, node in (schema.get("properties") or {}).items():
        if not isinstance(node, Mapping):
            continue
        key = f"{prefix}.{name}" if prefix else str(name)
        if node.get("type") == "object" and "properties" in node:
            yield from schema_leaves(node, key)
        else:
            yield key, node


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def search_space(
    schema: Mapping[str, Any], hyperparameters: list[str] | None, param_ranges: Mapping[str, Any] | None
) -> list[AutomlParameter]:
    """The parameters the engine searches: the requested ones, else the leaves the schema marks automl_enabled."""
    leaves = dict(schema_leaves(schema))
    if hyperparameters:
        unknown = [name for name in hyperparameters if name not in leaves]
        if unknown:
            searchable = ", ".join(k for k, v in leaves.items() if v.get("automl_enabled") is not False) or "none"
            raise TaoError(
                "E_BAD_INPUT",
                f"hyperparameters {', '.join(unknown)} are not in the model's train schema",
                f"search keys the schema declares (searchable: {searchable})",
            )
        names = list(hyperparameters)
    else:
        names = [k for k, v in leaves.items() if v.get("automl_enabled") is True]
    ranges = dict(param_ranges or {})
    stray = sorted(set(ranges) - set(names))
    if stray:
        raise TaoError(
            "E_BAD_INPUT",
            f"param_ranges names {', '.join(stray)}, which is not searched",
            "add it to hyperparameters, or drop it from param_ranges",
        )
    out = []
    for name in names:
        leaf, custom = leaves[name], ranges.get(name) or {}
        if not isinstance(custom, Mapping):
            raise TaoError("E_BAD_INPUT", f"param_ranges[{name!r}] is not a mapping", "e.g. {'min': 1e-5, 'max': 1e-2}")
        options = custom.get("options", leaf.get("enum"))
        if options is not None and (not isinstance(options, list) or not options):
            raise TaoError("E_BAD_INPUT", f"param_ranges[{name!r}] options is not a non-empty list", "e.g. [8, 16]")
        kind = "categorical" if options else TYPES.get(str(leaf.get("type")), str(leaf.get("type") or "float"))
        low = _number(custom.get("min", leaf.get("minimum")))
        high = _number(custom.get("max", leaf.get("maximum")))
        if low is not None and high is not None and low > high:
            raise TaoError("E_BAD_INPUT", f"param_ranges[{name!r}] has min > max", "give min <= max")
        out.append(
            AutomlParameter(name=name, type=kind, min=low, max=high, options=options, default=leaf.get("default"))
        )
    if not out:
        raise TaoError(
            "E_BAD_INPUT",
            "the model's train schema marks no parameter automl_enabled and no hyperparameters were given",
            "name the spec keys to search in hyperparameters=[...]",
        )
    return out


def engine_ranges(space: list[AutomlParameter]) -> dict[str, dict[str, Any]]:
    """The ranges in the engine's own vocabulary (custom_param_ranges)."""
    ranges: dict[str, dict[str, Any]] = {}
    for p in space:
        entry: dict[str, Any] = {}
        if p.min is not None:
            entry["valid_min"] = p.min
        if p.max is not None:
            entry["valid_max"] = p.max
        if p.options:
            entry["valid_options"] = p.options
        if entry:
            ranges[p.name] = entry
    return ranges


def direction_of(metric: str, direction: str | None) -> str:
    if direction:
        return direction
    return "minimize" if any(word in metric.lower() for word in LOSS_WORDS) else "maximize"


def gpu_hours(recommendations: int, gpu_count: int, num_nodes: int, minutes: int | None) -> float | None:
    """The most GPU time the run may spend: every recommendation running to its time limit on all its GPUs."""
    if minutes is None:
        return None
    return round(recommendations * max(gpu_count, 0) * num_nodes * minutes / 60.0, 2)
