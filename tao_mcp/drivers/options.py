"""Typed platform options and settings: one pydantic model pair per platform is the single source.

`<Platform>Options` (extra="forbid") validates `submit_job(options=...)` and normalizes it into the dict stored
with the job; `<Platform>Settings` reads the platform's environment variables once. The same field descriptions
feed `list_platforms(platform=...)`, the README tables (`tao-mcp docs --write`) and the error texts, which read
`E_BAD_INPUT: options.<key>: <problem>. Fix: ...` (settings: `E_BAD_SETTING: <VARIABLE>: ...`).

Each options model also states its policy facts (host access it asks for, host paths it binds, what is never
allowed); the service's job policy decides on them, so no driver carries policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from tao_mcp.errors import TaoError
from tao_mcp.secret_names import is_secret_name

MAX_INPUT_SHOWN = 80


@dataclass
class PolicyFacts:
    """What a job's options ask of the host; the job policy (service/policy.py) rules on it."""

    host_access: list[str] = field(default_factory=list)  # needs TAO_MCP_ALLOW_HOST_ACCESS=1
    binds: list[tuple[str, str]] = field(default_factory=list)  # (option, host path): must lie under the mount roots
    never: list[str] = field(default_factory=list)  # refused whatever the settings say (the container engine's socket)


# --- small shared value types --------------------------------------------------------------------------------------


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("is true/false, not a number")
    return value


def split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _blank_to_none(value: Any) -> Any:
    return None if value in ("", [], {}) else value


Number = Annotated[int, BeforeValidator(_no_bool)]
PositiveFloat = Annotated[float, BeforeValidator(_no_bool)]
CommaList = Annotated[list[str], BeforeValidator(split_commas)]
BlankIsNone = BeforeValidator(_blank_to_none)


def matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """A string option that must match `pattern`; the error says what it must be."""

    def check(value: str | None) -> str | None:
        if value is not None and not pattern.match(value):
            raise ValueError(f"is not {what}")
        return value

    return AfterValidator(check)


def settings_of(info: ValidationInfo) -> Any:
    """The platform settings handed to Options.parse (validation context), for defaults."""
    return (info.context or {}).get("settings")


# --- errors --------------------------------------------------------------------------------------------------------


def _where(prefix: str, loc: Iterable[Any]) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "is not valid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    shown = repr(error.get("input"))
    if len(shown) > MAX_INPUT_SHOWN:
        shown = shown[:MAX_INPUT_SHOWN] + "…"
    return f"{message} (got {shown})" if "input" in error and error.get("type") != "missing" else message


def describe(model: type[BaseModel], name: str) -> str:
    info = model.model_fields.get(name)
    return (info.description or "") if info is not None else ""


# --- options -------------------------------------------------------------------------------------------------------


class PlatformOptions(BaseModel):
    """Base of every `<Platform>Options`: unknown keys are refused; values are normalized on validation."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, validate_default=False)
    platform: ClassVar[str]  # the platform's name, as list_platforms shows it
    label: ClassVar[str]  # how errors name it: "Docker"
    input_only: ClassVar[frozenset[str]] = frozenset()  # options folded into others on validation, not stored

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None, settings: Any = None) -> dict[str, Any]:
        """Validate raw options (E_BAD_INPUT naming options.<key>) and return the normalized dict to store."""
        if options is not None and not isinstance(options, Mapping):
            raise TaoError("E_BAD_INPUT", f"options is {type(options).__name__}, not an object", cls.fix_all())
        try:
            model = cls.model_validate(dict(options or {}), context={"settings": settings})
        except ValidationError as exc:
            raise cls.bad_input(exc) from None
        return model.model_dump(exclude=set(cls.input_only))

    @classmethod
    def bad_input(cls, exc: ValidationError) -> TaoError:
        problems, fixes, seen = [], [], set()
        for error in exc.errors(include_url=False):
            loc = tuple(error.get("loc", ()))
            key = str(loc[0]) if loc else ""
            if key and key in seen:  # one problem per option (a union reports each alternative)
                continue
            seen.add(key)
            if error.get("type") == "extra_forbidden":
                problems.append(f"options.{key}: not a {cls.label} option")
                fixes.append(f"use only {', '.join(cls.model_fields)}")
            elif not key:  # a rule over several options; its message starts with the option it names, if any
                message = _problem({k: v for k, v in error.items() if k != "input"})
                named = re.match(r"[a-z_]+", message)
                problems.append(f"options.{message}" if named and named.group(0) in cls.model_fields else message)
            else:
                problems.append(f"{_where('options', loc)}: {_problem(error)}")
                fixes.append(f"give options.{key} as {describe(cls, key) or 'documented'}")
        fixes = list(dict.fromkeys(fixes))
        fixes.append(f"list_platforms(platform='{cls.platform}') describes every option")
        return TaoError("E_BAD_INPUT", "; ".join(problems), "; ".join(fixes))

    @classmethod
    def fix_all(cls) -> str:
        return f"give options as an object; list_platforms(platform='{cls.platform}') describes every option"

    @classmethod
    def help(cls) -> dict[str, str]:
        """option -> description (list_platforms and the README)."""
        return {name: info.description or "" for name, info in cls.model_fields.items()}

    @classmethod
    def policy_facts(cls, options: Mapping[str, Any]) -> PolicyFacts:
        """Facts for the job policy, read from the normalized options. Platforms with host-level options override."""
        return PolicyFacts()


# --- settings ------------------------------------------------------------------------------------------------------


class PlatformSettings(BaseModel):
    """Base of every `<Platform>Settings`: fields are aliased by their environment variable; read once."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, str_strip_whitespace=True)
    # Variables that give the server control of a backend: never forwarded into a job (job policy).
    control_plane: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        values: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            variable = info.alias or name
            text = (env.get(variable) or "").strip()
            if text:
                values[variable] = text
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise cls.bad_setting(exc) from None

    @classmethod
    def of(cls, settings: Self | Mapping[str, str]) -> Self:
        return settings if isinstance(settings, cls) else cls.from_env(settings)  # type: ignore[arg-type]

    @classmethod
    def variables(cls) -> dict[str, str]:
        """VARIABLE -> description (the README settings table)."""
        return {(info.alias or name): info.description or "" for name, info in cls.model_fields.items()}

    @classmethod
    def bad_setting(cls, exc: ValidationError) -> TaoError:
        errors = exc.errors(include_url=False)
        by_variable = {name: (info.alias or name) for name, info in cls.model_fields.items()}
        names = [by_variable.get(str(e["loc"][0]), str(e["loc"][0])) if e.get("loc") else "" for e in errors]
        missing = [n for n, e in zip(names, errors, strict=True) if e.get("type") == "missing"]
        if missing:
            return TaoError(
                "E_MISSING_CREDENTIALS",
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                "set them in the server environment or ~/.config/tao/.env and restart the server",
            )
        # a malformed secret is not echoed back
        shown = [
            e if not is_secret_name(n) else {k: v for k, v in e.items() if k != "input"}
            for n, e in zip(names, errors, strict=True)
        ]
        problems = [f"{n}: {_problem(e)}" for n, e in zip(names, shown, strict=True)]
        fixes = []
        for variable in dict.fromkeys(names):
            field_name = next((k for k, v in by_variable.items() if v == variable), variable)
            fixes.append(f"set {variable} to {describe(cls, field_name) or 'a valid value'}")
        return TaoError("E_BAD_SETTING", "; ".join(problems), "; ".join(fixes) + ", then restart the server")


def escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "\\<")  # a table cell: no column breaks, no HTML tags


def markdown_table(header: tuple[str, str], rows: Mapping[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{name}` | {escape_cell(text)} |" for name, text in rows.items()]
    return "\n".join(lines)
