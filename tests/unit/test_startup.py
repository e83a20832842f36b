"""The server must start fast: heavy client libraries are imported only by the driver that needs them."""

from __future__ import annotations

import json
import subprocess
import sys


def test_heavy_clients_are_not_imported_at_start() -> None:
    code = (
        "import sys, json; from tao_mcp.server import build_server; build_server({}); "
        "import tao_mcp.drivers.slurm, tao_mcp.cli; "
        "print(json.dumps([m for m in ('boto3', 'botocore', 'paramiko', 'kubernetes', 'docker', 'matplotlib') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
