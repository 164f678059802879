"""Settings of the registry service."""

from modelfleet_common.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    """`FLEET_*` settings of registry; its own settings arrive with its behaviour (#3)."""
