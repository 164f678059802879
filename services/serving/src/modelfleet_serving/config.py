"""Settings of the serving service."""

from modelfleet_common.settings import ServiceSettings


class ServingSettings(ServiceSettings):
    """`FLEET_*` settings of serving; its own settings arrive with its behaviour (#4)."""
