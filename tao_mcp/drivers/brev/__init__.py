"""Brev GPU instances through the `brev` CLI; jobs are docker containers started by `brev exec`."""

from tao_mcp.drivers.brev.driver import BrevDriver

__all__ = ["BrevDriver"]
