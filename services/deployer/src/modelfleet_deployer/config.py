"""Settings of the deployer service."""

from modelfleet_common.settings import ServiceSettings


class DeployerSettings(ServiceSettings):
    """`FLEET_*` settings of deployer; its own settings arrive with its behaviour (#4)."""
