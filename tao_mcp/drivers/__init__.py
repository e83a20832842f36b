"""Platform drivers. Each lives in its own module and is imported only when its platform is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tao_mcp.drivers.base import Driver
from tao_mcp.errors import TaoError

if TYPE_CHECKING:
    from tao_mcp.drivers.options import PlatformOptions, PlatformSettings

# platform name -> (module, class). Modules are imported lazily: heavy clients must not slow start-up.
DRIVERS: dict[str, tuple[str, str]] = {
    "slurm": ("tao_mcp.drivers.slurm", "SlurmDriver"),
    "brev": ("tao_mcp.drivers.brev", "BrevDriver"),
    "lepton": ("tao_mcp.drivers.lepton", "LeptonDriver"),
    "kubernetes": ("tao_mcp.drivers.k8s", "KubernetesDriver"),
    "docker": ("tao_mcp.drivers.docker", "DockerDriver"),
}
# platform name -> (module, options model, settings model): light modules (pydantic only), the single source of
# each platform's options and settings (validation, list_platforms help, README tables, job policy facts).
MODELS: dict[str, tuple[str, str, str]] = {
    "slurm": ("tao_mcp.drivers.slurm.options", "SlurmOptions", "SlurmSettings"),
    "brev": ("tao_mcp.drivers.brev.options", "BrevOptions", "BrevSettings"),
    "lepton": ("tao_mcp.drivers.lepton.options", "LeptonOptions", "LeptonSettings"),
    "kubernetes": ("tao_mcp.drivers.k8s.options", "KubernetesOptions", "KubernetesSettings"),
    "docker": ("tao_mcp.drivers.docker_options", "DockerOptions", "DockerSettings"),
}


def platform_models(platform: str) -> tuple[type[PlatformOptions], type[PlatformSettings]]:
    module_name, options_name, settings_name = MODELS[platform]
    module = importlib.import_module(module_name)
    return getattr(module, options_name), getattr(module, settings_name)


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
    return driver_class(platform_models(platform)[1].from_env(settings))
