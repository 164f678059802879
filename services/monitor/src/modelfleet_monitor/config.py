"""Settings of the monitor service."""

from modelfleet_common.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    """`FLEET_*` settings of monitor; its own settings arrive with its behaviour (#5)."""
