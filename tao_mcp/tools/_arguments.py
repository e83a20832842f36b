"""Every failed tool call reaches the agent coded: `E_CODE: cause. Fix: ...`, with isError set.

The SDK reports a call whose arguments fail validation with pydantic's own text (input echo, a pydantic URL) and
prefixes every tool error with "Error executing tool <name>:". This middleware validates the arguments first and
answers `E_BAD_INPUT: <argument>: <problem>. Fix: <allowed values or range>` from the tool's input schema, and it
removes the SDK prefix from the errors the tools raise. A failure that is not coded (a bug) becomes E_INTERNAL,
without the exception's text (that stays in the server log).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from tao_mcp.errors import TaoError

CODED = re.compile(r"^E_[A-Z0-9_]+: ")
INPUT_ECHO_CHARS = 60  # how much of a rejected value the message repeats


def coded_tool_errors(server: MCPServer[Any]) -> Callable[..., Any]:
    """The middleware, bound to the server whose tools it checks."""

    async def middleware(ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        name, arguments = ctx.params.get("name"), ctx.params.get("arguments") or {}
        tool = server._tool_manager.get_tool(name) if isinstance(name, str) else None  # no public lookup in mcp 2.3
        if tool is None:
            known = ", ".join(sorted(t.name for t in server._tool_manager.list_tools()))
            return error_result(TaoError("E_BAD_INPUT", f"name: no tool is named {clip(name)}", f"use one of: {known}"))
        if isinstance(arguments, Mapping):
            try:
                tool.fn_metadata.validate_arguments(dict(arguments))
            except ValidationError as exc:
                return error_result(bad_input(exc, tool.parameters))
        return recode(await call_next(ctx), tool.name)

    return middleware


def bad_input(exc: ValidationError, schema: Mapping[str, Any]) -> TaoError:
    """One E_BAD_INPUT naming every rejected argument, what is wrong with it and what is allowed."""
    causes, fixes = [], []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err.get("loc", ())]
        where = ".".join(loc) or "arguments"
        problem, fix = describe(err, loc, schema)
        causes.append(f"{where}: {problem}")
        if fix:
            fixes.append(f"{where}: {fix}" if len(exc.errors()) > 1 else fix)
    return TaoError("E_BAD_INPUT", "; ".join(dict.fromkeys(causes)), "; ".join(dict.fromkeys(fixes)) or None)


def describe(err: Mapping[str, Any], loc: list[str], schema: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(err.get("type", ""))
    properties = schema.get("properties") or {}
    if kind == "extra_forbidden":
        names = sorted(properties)
        close = difflib.get_close_matches(loc[-1], names, n=1) if loc and len(loc) == 1 else []
        hint = f"did you mean {close[0]}? " if close else ""
        return "unknown argument", f"{hint}this tool takes: {', '.join(names)}"
    if kind == "missing":
        return "required argument is missing", f"pass {'.'.join(loc)}" + describe_field(field_schema(loc, schema))
    msg = str(err.get("msg", "invalid value")).rstrip(".")
    msg = msg[0].lower() + msg[1:] if msg else "invalid value"
    got = f" (got {clip(err.get('input'))})" if "input" in err else ""
    field = field_schema(loc, schema)
    wrong_type = kind.endswith(("_type", "_parsing")) and isinstance(field.get("type"), str) and "enum" not in field
    fix = "; ".join(dict.fromkeys([of_type(field), allowed(field)])) if wrong_type else allowed(field)
    return f"{msg}{got}", fix or "see the tool's input schema"


def field_schema(loc: list[str], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The JSON schema of the argument at `loc` (nested objects and $defs followed; {} when unknown)."""
    node: Mapping[str, Any] = schema
    defs = schema.get("$defs") or {}
    for part in loc:
        node = _deref(node, defs)
        props = node.get("properties") or {}
        if part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return {}
    return _deref(node, defs)


def _deref(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref.rsplit("/", 1)[-1]) or {}
    for option in node.get("anyOf") or ():  # `X | None`: the non-null branch says what is allowed
        if option.get("type") != "null":
            return _deref(option, defs)
    return node


def allowed(field: Mapping[str, Any]) -> str:
    if "enum" in field:
        return "use one of: " + ", ".join(str(v) for v in field["enum"])
    bounds = []
    low = field.get("minimum", field.get("exclusiveMinimum"))
    high = field.get("maximum", field.get("exclusiveMaximum"))
    if low is not None and high is not None:
        bounds.append(f"use a value from {low} to {high}")
    elif low is not None:
        bounds.append(f"use a value of at least {low}")
    elif high is not None:
        bounds.append(f"use a value of at most {high}")
    shortest, longest = field.get("minLength"), field.get("maxLength")
    if shortest and longest:
        bounds.append(f"use {shortest} to {longest} characters")
    elif longest:
        bounds.append(f"use at most {longest} characters")
    elif shortest:
        bounds.append(f"use at least {shortest} characters")
    if "pattern" in field:
        bounds.append(f"match {field['pattern']}")
    if "maxItems" in field:
        bounds.append(f"give at most {field['maxItems']} items")
    return "; ".join(bounds) or of_type(field)


def of_type(field: Mapping[str, Any]) -> str:
    kind = field.get("type")
    if not isinstance(kind, str):
        return ""
    article = "an" if kind[0] in "aeiou" else "a"
    return f"pass {article} {kind}" + describe_field(field)


def describe_field(field: Mapping[str, Any]) -> str:
    text = str(field.get("description") or "").strip()
    return f" ({text[:120]})" if text else ""


def clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= INPUT_ECHO_CHARS else text[: INPUT_ECHO_CHARS - 1] + "…"


def error_result(exc: TaoError) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)


def recode(result: Any, tool: str) -> Any:
    """The SDK's error text without its prefix; an uncoded error becomes E_INTERNAL (never its exception text)."""
    data = result.model_dump(by_alias=True, exclude_none=True) if isinstance(result, BaseModel) else result
    if not isinstance(data, dict) or not data.get("isError"):
        return result
    content = data.get("content") or []
    text = content[0].get("text", "") if content and isinstance(content[0], Mapping) else ""
    prefix = f"Error executing tool {tool}"
    rest = text[len(prefix) :].removeprefix(": ") if text.startswith(prefix) else text
    if not CODED.match(rest):
        rest = str(
            TaoError(
                "E_INTERNAL",
                f"{tool} failed unexpectedly (the server log has the details)",
                "retry once; if it fails the same way, report it to the server's operator",
            )
        )
    return {**data, "content": [{"type": "text", "text": rest}, *content[1:]]}
