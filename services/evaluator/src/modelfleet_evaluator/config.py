"""Settings of the evaluator service."""

from modelfleet_common.settings import ServiceSettings


class EvaluatorSettings(ServiceSettings):
    """`FLEET_*` settings of evaluator; its own settings arrive with its behaviour (#3)."""
