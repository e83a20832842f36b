"""`python -m benchmarks [--quick] [--only NAME ...]`: the scale measures, printed as `measure | goal | result |
ratio | pass`.

The full run measures the sizes of the table in the README (100 000 stored jobs, 10 000 open); `--quick` is the
short form CI runs: smaller sizes, fewer repetitions. It exits non-zero only when a benchmark is broken (raises,
or measures nothing); a ratio over its goal is reported, and fails the exit status only in the full run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import traceback
from pathlib import Path

import anyio

from benchmarks import logs, measures
from benchmarks.measures import Row, Sizes

MEASURES = {
    "list": measures.list_jobs_service,
    "list-mcp": measures.list_jobs_mcp,
    "status": measures.job_status,
    "stall": measures.loop_stall,
    "rss": measures.rss,
    "slurm": measures.slurm_sweep,
    "logs": logs.slurm_logs,
    "waiters": logs.waiters,
    "docker-logs": logs.docker_tail,
    "k8s-logs": logs.k8s_tail,
    "lepton-logs": logs.lepton_tail,
}


async def run(names: list[str], sizes: Sizes) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    broken: list[str] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"tao-bench-{name}-") as tmp:
            try:
                result = MEASURES[name](sizes, Path(tmp))
                rows += await result if hasattr(result, "__await__") else result
            except Exception:
                traceback.print_exc()
                broken.append(name)
        print(f"... {name} done", file=sys.stderr, flush=True)
    return rows, broken


def table(rows: list[Row]) -> str:
    lines = ["| measure | goal | result | ratio | pass |", "|---|---|---|---|---|"]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(f"| {row.measure} | {row.goal} | {row.result} | {ratio} | {'yes' if row.passed else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks every benchmark still runs")
    parser.add_argument("--only", nargs="+", choices=sorted(MEASURES), help="run only these measures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the pollers' expected warnings (no credentials) stay quiet
    names = args.only or list(MEASURES)
    rows, broken = anyio.run(run, names, Sizes.pick(args.quick))
    print(table(rows))
    if broken:
        print(f"BROKEN: {', '.join(broken)}", file=sys.stderr)
        return 2
    if not args.quick and not all(row.passed for row in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
