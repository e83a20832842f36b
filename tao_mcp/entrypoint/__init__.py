"""The entrypoint: S3 (and NGC / Hugging Face) inputs and outputs wrapped around the container command.

`builder.build_entrypoint` runs on the server and returns an `EntrypointPlan`; `runner.py` is the standard-library
program that travels inline in the plan's command and runs inside the container.
"""

from tao_mcp.entrypoint.builder import EntrypointPlan, build_entrypoint

__all__ = ["EntrypointPlan", "build_entrypoint"]
