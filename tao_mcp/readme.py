"""README blocks generated from the option and settings models (`tao-mcp docs --write`; a test keeps them in sync).

A block sits between `<!-- BEGIN GENERATED <name> -->` and `<!-- END GENERATED <name> -->`; the text around it is
written by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

README_PATH = Path("README.md")  # relative to the repository root
BLOCK = re.compile(r"(<!-- BEGIN GENERATED (?P<name>[\w-]+) -->\n).*?(<!-- END GENERATED (?P=name) -->)", re.DOTALL)


def blocks() -> dict[str, str]:
    """block name -> generated markdown: `<platform>` (settings and options tables) and `policy`."""
    from tao_mcp.drivers import MODELS, platform_models
    from tao_mcp.drivers.options import markdown_table
    from tao_mcp.service.policy import PolicySettings

    result = {}
    for platform in MODELS:
        options, settings = platform_models(platform)
        result[platform] = (
            markdown_table(("variable", "meaning"), settings.variables())
            + "\n\nPer job, `submit_job(options={…})`:\n\n"
            + markdown_table(("option", "meaning"), options.help())
        )
    result["policy"] = markdown_table(("variable", "meaning"), PolicySettings.variables())
    return result


def regenerate(text: str) -> str:
    generated = blocks()

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in generated:
            return match.group(0)
        return f"{match.group(1)}{generated[name]}\n{match.group(3)}"

    return BLOCK.sub(fill, text)


def missing_blocks(text: str) -> list[str]:
    present = {m.group("name") for m in BLOCK.finditer(text)}
    return sorted(set(blocks()) - present)


def run_docs(path: Path, *, write: bool) -> int:
    import sys

    text = path.read_text()
    new = regenerate(text)
    missing = missing_blocks(text)
    if missing:
        print(f"{path} has no generated block for: {', '.join(missing)}", file=sys.stderr)
        return 1
    if write:
        if new != text:
            path.write_text(new)
        print(f"wrote {path}", file=sys.stderr)
        return 0
    if new != text:
        print(f"{path} is out of date: run `tao-mcp docs --write` and review the diff", file=sys.stderr)
        return 1
    return 0
