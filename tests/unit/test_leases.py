"""Launch leases: held while a launch runs, by this process or another; a dead process holds none."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tao_mcp.service.leases import LaunchLeases

HOLDER = """
import sys, time
from pathlib import Path
from tao_mcp.service.leases import LaunchLeases
with LaunchLeases(Path(sys.argv[1])).hold("job1") as held:
    print("held" if held else "busy", flush=True)
    time.sleep(60)
"""


def test_a_lease_excludes_this_process_and_others_until_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "launches.lock"
    leases = LaunchLeases(path)
    with leases.hold("job1") as held:
        assert held
        with leases.hold("job1") as again:
            assert not again  # the same process, launching it already
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with leases.hold("job1") as held:
            assert not held  # another live process is launching it
        with leases.hold("job2") as held:
            assert held  # other jobs are free
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with leases.hold("job1") as held:
            assert held  # the kernel dropped the dead holder's lock
    finally:
        holder.kill()
        holder.wait(timeout=10)
        leases.close()
