"""tao-mcp: an MCP tool server for NVIDIA TAO GPU jobs on Lepton, Brev, SLURM, Kubernetes and Docker."""

__version__ = "0.1.0"
