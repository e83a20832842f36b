"""SLURM over SSH: ssh.py (connections), script.py (job files), parse.py (squeue/sacct), driver.py (SlurmDriver)."""

from tao_mcp.drivers.slurm.driver import SlurmDriver

__all__ = ["SlurmDriver"]
