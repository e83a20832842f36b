"""The entrypoint: S3 (and NGC / Hugging Face) inputs and outputs wrapped around the container command
(docs/entrypoint.md).

`builder.build_entrypoint` runs on the server and returns an `EntrypointPlan`; `runner.py` is the standard-library
program that travels inline in the plan's command and runs inside the container.

Dotted spec paths (`dataset.sources[0].image_dir`) mean the same on the server and in the container, so the
runner's path helpers are part of this package's API: `parse_path` (raises `RunnerError` E_BAD_INPUT) and
`get_path` (returns `MISSING` where the tree has no value).
"""

from tao_mcp.entrypoint.builder import EntrypointPlan, build_entrypoint, runner_blob
from tao_mcp.entrypoint.runner import MISSING, RunnerError, get_path, parse_path

__all__ = ["MISSING", "EntrypointPlan", "RunnerError", "build_entrypoint", "get_path", "parse_path", "runner_blob"]
