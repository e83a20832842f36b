"""The dotted-override language of spec_overrides: `train.num_epochs`, `dataset.sources[0].image_dir`.

A key is a dotted path with list indexes (parsed by the entrypoint, which reads the same paths in the container);
setting one creates the mappings and lists on the way, an index one past the end appends, and a mapping value
merges into the mapping already there (its own keys may be dotted too). Mistakes are E_BAD_INPUT naming the key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tao_mcp.entrypoint import MISSING, RunnerError, get_path, parse_path
from tao_mcp.errors import TaoError


def _bad_input(cause: str, fix: str) -> TaoError:
    return TaoError("E_BAD_INPUT", cause, fix)


def merge_nested(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Nested merge (dicts merge, everything else replaces); returns a new tree, inputs untouched."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def path_tokens(key: str, where: str) -> list[str | int]:
    if not isinstance(key, str) or not key:
        raise _bad_input(f"{where}: override keys must be non-empty strings", "write keys like train.num_epochs")
    try:
        return parse_path(key)
    except RunnerError:
        raise _bad_input(
            f"{where}: {key!r} is not a dotted spec path", "write it like dataset.train_data_sources[0].image_dir"
        ) from None


def _step(node: Any, token: str | int, want_list: bool, where: str) -> Any:
    fresh: Any = [] if want_list else {}
    if isinstance(token, str):
        if not isinstance(node, dict):
            raise _bad_input(f"cannot set {where}: the value above '{token}' is not a mapping", "fix the path")
        if node.get(token) is None:
            node[token] = fresh
        child = node[token]
    else:
        if not isinstance(node, list):
            raise _bad_input(f"cannot set {where}: the value above [{token}] is not a list", "fix the path")
        if token == len(node):
            node.append(fresh)
        elif token > len(node):
            raise _bad_input(
                f"cannot set {where}: index [{token}] is past the end of a {len(node)}-item list",
                f"use an index up to [{len(node)}] (that one appends)",
            )
        elif node[token] is None:
            node[token] = fresh
        child = node[token]
    if (want_list and not isinstance(child, list)) or (not want_list and not isinstance(child, dict)):
        kind = "list" if want_list else "mapping"
        raise _bad_input(f"cannot set {where}: the spec holds a {type(child).__name__} there, not a {kind}", "fix it")
    return child


def _assign(node: Any, token: str | int, value: Any, where: str) -> None:
    if isinstance(token, str):
        if not isinstance(node, dict):
            raise _bad_input(f"cannot set {where}: the value above '{token}' is not a mapping", "fix the path")
        node[token] = value
    elif not isinstance(node, list):
        raise _bad_input(f"cannot set {where}: the value above [{token}] is not a list", "fix the path")
    elif token < len(node):
        node[token] = value
    elif token == len(node):
        node.append(value)
    else:
        raise _bad_input(
            f"cannot set {where}: index [{token}] is past the end of a {len(node)}-item list",
            f"use an index up to [{len(node)}] (that one appends)",
        )


def _get(node: Any, token: str | int) -> Any:
    if isinstance(token, str):
        return node.get(token) if isinstance(node, dict) else None
    return node[token] if isinstance(node, list) and token < len(node) else None


def apply_override(tree: dict[str, Any], key: str, value: Any, where: str | None = None) -> None:
    """Set `key` (a dotted path, list indexes allowed) in tree; a mapping value merges into a mapping there,
    and its own keys may be dotted too."""
    where = where or key
    tokens = path_tokens(key, where)
    node: Any = tree
    for i, token in enumerate(tokens[:-1]):
        node = _step(node, token, isinstance(tokens[i + 1], int), where)
    last = tokens[-1]
    if isinstance(value, Mapping):
        existing = _get(node, last)
        if not isinstance(existing, dict):
            existing = {}
            _assign(node, last, existing, where)
        for k, v in value.items():
            apply_override(existing, k, v, f"{where}.{k}")
    else:
        _assign(node, last, copy.deepcopy(value), where)


def apply_overrides(tree: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    for key, value in overrides.items():
        apply_override(out, key, value)
    return out


def expanded(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides as one nested tree (to ask what they set)."""
    return apply_overrides({}, overrides or {})


def sets_path(tokens: list[str | int], *trees: Mapping[str, Any]) -> bool:
    """Whether any of the trees holds a value at the path (None counts: it was set)."""
    return any(get_path(tree, tokens) is not MISSING for tree in trees)
