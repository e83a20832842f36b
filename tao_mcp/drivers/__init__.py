"""Platform drivers. Each lives in its own module and is imported only when its platform is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from tao_mcp.drivers.base import Driver
from tao_mcp.errors import TaoError

# platform name -> (module, class). Modules are imported lazily: heavy clients must not slow start-up.
DRIVERS: dict[str, tuple[str, str]] = {
    "slurm": ("tao_mcp.drivers.slurm", "SlurmDriver"),
    "brev": ("tao_mcp.drivers.brev", "BrevDriver"),
    "lepton": ("tao_mcp.drivers.lepton", "LeptonDriver"),
    "kubernetes": ("tao_mcp.drivers.k8s", "KubernetesDriver"),
    "docker": ("tao_mcp.drivers.docker", "DockerDriver"),
}


def load_driver(platform: str, settings: Mapping[str, str]) -> Driver:
    try:
        module_name, class_name = DRIVERS[platform]
    except KeyError:
        available = ", ".join(sorted(DRIVERS))
        raise TaoError(
            "E_PLATFORM_NOT_AVAILABLE",
            f"the {platform} driver is not part of this tao-mcp version yet",
            f"submit to one of: {available}",
        ) from None
    driver_class = getattr(importlib.import_module(module_name), class_name)
    return driver_class(settings)
