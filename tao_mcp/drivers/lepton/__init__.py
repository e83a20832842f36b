"""DGX Cloud Lepton batch jobs over plain HTTP (no leptonai SDK): client.py (the REST transport), render.py (job
bodies and options), status.py (job objects -> Observation), logs.py (Loki log pages), driver.py (LeptonDriver)."""

from tao_mcp.drivers.lepton.client import GATEWAY
from tao_mcp.drivers.lepton.driver import LeptonDriver
from tao_mcp.drivers.lepton.render import backend_job_name, choose_shape
from tao_mcp.drivers.lepton.status import map_state

__all__ = ["GATEWAY", "LeptonDriver", "backend_job_name", "choose_shape", "map_state"]
