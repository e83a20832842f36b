"""Locating and reading the TAO skill bank ($TAO_SKILL_BANK_PATH, default ~/tao-skills-external).

Files are parsed with yaml.safe_load / json and cached per (path, mtime, size); the directories are listed on
every call, so edits to the bank are seen without a restart. A missing bank is not an error: the metadata shipped
in the package (tao_mcp/data/platforms.yaml, tao_mcp/data/models.yaml) is used instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tao_mcp.errors import TaoError

DEFAULT_BANK = "~/tao-skills-external"

try:  # libyaml when available: the bank holds ~100 model records
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


def bank_path(settings: Mapping[str, str]) -> Path:
    return Path(settings.get("TAO_SKILL_BANK_PATH") or DEFAULT_BANK).expanduser().absolute()


def bank_root(settings: Mapping[str, str]) -> Path | None:
    """The skill bank directory, or None when it does not exist (the built-in metadata is used then)."""
    path = bank_path(settings)
    return path if path.is_dir() else None


def bank_notes(settings: Mapping[str, str]) -> list[str]:
    explicit = settings.get("TAO_SKILL_BANK_PATH")
    if explicit and bank_root(settings) is None:
        return [f"TAO_SKILL_BANK_PATH={explicit} is not a directory: the built-in metadata is used"]
    return []


def bad_bank(path: Path, why: str) -> TaoError:
    return TaoError(
        "E_BAD_SKILL_BANK",
        f"the skill bank file {path} {why}",
        "fix or remove that file, or point TAO_SKILL_BANK_PATH at another skill bank "
        "(a missing skill bank means the built-in metadata is used)",
    )


_CACHE: dict[Path, tuple[int, int, Any]] = {}


def read_file(path: Path) -> Any:
    """Parse a YAML or JSON bank file (cached per path + mtime + size). Treat the result as read-only."""
    try:
        st = path.stat()
        hit = _CACHE.get(path)
        if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise bad_bank(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_Loader)  # a SafeLoader
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise bad_bank(path, f"is not valid {kind} ({first})") from None
    _CACHE[path] = (st.st_mtime_ns, st.st_size, data)
    return data


def read_mapping(path: Path) -> dict[str, Any]:
    data = read_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_bank(path, f"holds a {type(data).__name__}, not a mapping")
    return data
