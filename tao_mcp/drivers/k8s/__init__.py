"""Kubernetes driver (batch/v1 Jobs). Named k8s so it never shadows the `kubernetes` client library."""

from tao_mcp.drivers.k8s.driver import KubernetesDriver

__all__ = ["KubernetesDriver"]
