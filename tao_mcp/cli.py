"""`tao-mcp` entry point: serve (stdio by default, or streamable HTTP), the tools/list snapshot, README tables."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

SCHEMA_PATH = Path("tools_schema") / "tools.json"  # relative to the repository root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tao-mcp", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the MCP server (default)")
    for p in (parser, serve):
        p.add_argument("--http", action="store_true", help="serve streamable HTTP on /mcp instead of stdio")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8765)
        p.add_argument(
            "--allowed-hosts",
            default="",
            help="with a non-loopback --host: comma-separated Host header values clients use (name, name:port or "
            "name:*); DNS-rebinding protection refuses every other Host",
        )
        p.add_argument("--allowed-origins", default="", help="comma-separated browser Origins allowed (e.g. https://x)")
        p.add_argument(
            "--no-auth",
            action="store_true",
            help="HTTP without authentication, on a loopback host only (local tools: the Inspector, conformance)",
        )
        p.add_argument("--log-level", default="INFO")
    schema = sub.add_parser("schema", help="print, write or check the tools/list contract")
    schema.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH}")
    schema.add_argument("--check", action="store_true", help=f"exit 1 when the live tools differ from {SCHEMA_PATH}")
    schema.add_argument("--path", type=Path, default=SCHEMA_PATH)
    docs = sub.add_parser("docs", help="check (default) or write the README blocks generated from the models")
    docs.add_argument("--write", action="store_true", help="rewrite the generated blocks of README.md")
    docs.add_argument("--path", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)

    if args.command == "schema":
        sys.exit(run_schema(args.path, write=args.write, check=args.check))
    if args.command == "docs":
        from tao_mcp.readme import run_docs

        sys.exit(run_docs(args.path, write=args.write))
    # Logs go to stderr only: in stdio mode stdout is the protocol.
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from tao_mcp.server import build_server

    if not args.http:
        build_server().run()
        return
    from tao_mcp.config import load_settings
    from tao_mcp.errors import TaoError
    from tao_mcp.http_auth import plan_http

    try:
        plan = plan_http(
            load_settings(),
            host=args.host,
            port=args.port,
            allowed_hosts=_csv(args.allowed_hosts),
            allowed_origins=_csv(args.allowed_origins),
            no_auth=args.no_auth,
        )
    except TaoError as exc:
        print(f"tao-mcp: {exc}", file=sys.stderr)
        sys.exit(2)
    for notice in plan.notices:
        print(notice, file=sys.stderr)
    build_server(http=plan).run(
        "streamable-http", host=args.host, port=args.port, transport_security=plan.transport_security
    )


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def tools_contract() -> list[dict]:
    """The tools/list answer as a stable, sorted JSON-able list."""
    import anyio
    from mcp.client import Client

    from tao_mcp.server import build_server

    async def fetch() -> list[dict]:
        async with Client(build_server(), mode="legacy") as client:
            tools = (await client.list_tools()).tools
        return [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in sorted(tools, key=lambda t: t.name)
        ]

    return anyio.run(fetch)


def run_schema(path: Path, *, write: bool, check: bool) -> int:
    text = json.dumps(tools_contract(), indent=2, sort_keys=True) + "\n"
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
        return 0
    if check:
        if not path.is_file() or path.read_text() != text:
            print(
                f"{path} differs from the live tools/list: run `tao-mcp schema --write` and review the diff",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0
