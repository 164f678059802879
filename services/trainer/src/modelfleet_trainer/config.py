"""Settings of the trainer service."""

from modelfleet_common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    """`FLEET_*` settings of trainer; its own settings arrive with its behaviour (#3)."""
