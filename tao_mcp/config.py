"""Server settings: the process environment, optionally completed from a .env file.

The process environment always wins over the file; the file is read once at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tao_mcp.errors import TaoError


def env_file_path(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("TAO_MCP_ENV_FILE")
    if explicit:
        return Path(explicit).expanduser()
    return Path("~/.config/tao/.env").expanduser()


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment plus values from the .env file for names the environment does not set."""
    from dotenv import dotenv_values

    environ = dict(os.environ if environ is None else environ)
    path = env_file_path(environ)
    if path.is_file():
        for name, value in dotenv_values(path).items():
            if value is not None and not environ.get(name):
                environ[name] = value
    return environ


def state_dir_path(settings: Mapping[str, str]) -> Path:
    """Where the private state lives: $TAO_MCP_STATE_DIR, else $XDG_STATE_HOME/tao-mcp, else
    ~/.local/state/tao-mcp (not created: see state_dir)."""
    explicit = settings.get("TAO_MCP_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = settings.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "tao-mcp"


def state_dir(settings: Mapping[str, str]) -> Path:
    """The private state directory, created (mode 0700) if needed."""
    path = state_dir_path(settings)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def positive_seconds(settings: Mapping[str, str], name: str, default: float, example: str) -> float:
    """A duration setting in seconds (> 0), or its default when unset; anything else is E_BAD_SETTING."""
    raw = settings.get(name) or ""
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = 0.0
    if value <= 0:
        raise TaoError("E_BAD_SETTING", f"{name}={raw!r} is not a number of seconds > 0", f"e.g. {example}")
    return value
