"""Which Kafka principal a CLI command (or a local service) connects as, and with which credentials.

An explicit configuration wins: any `FLEET_KAFKA_SECURITY_PROTOCOL` or `FLEET_KAFKA_SASL_USERNAME`
in the environment is used as it is (a cluster of your own). Otherwise, when the local broker of
`FLEET_LOCAL_HOME` (`make kafka`) is the secured one, a command connects to it as the `cli`
principal (`admin` for `modelfleet provision`), with the password read from its 0600 file.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelfleet_common.settings import KafkaSettings, ServiceSettings
from modelfleet_contracts.topics import CLI

from .local_home import default_home
from .local_home import kafka as local_kafka
from .local_home.kafka import ADMIN

_EXPLICIT = ("FLEET_KAFKA_SECURITY_PROTOCOL", "FLEET_KAFKA_SASL_USERNAME")


def local_broker(home: Path) -> str | None:
    """The bootstrap of the secured local broker of `home`, or None when the environment names
    another cluster (or this home has no secured broker)."""
    if any(os.environ.get(name) for name in _EXPLICIT) or not local_kafka.is_secured(home):
        return None
    return os.environ.get("FLEET_KAFKA_BOOTSTRAP") or local_kafka.endpoint(home) or KafkaSettings().bootstrap


def principal_environment(home: Path, principal: str) -> dict[str, str]:
    """`FLEET_KAFKA_*` of `principal` on the local broker of `home` (empty if it is not used)."""
    bootstrap = local_broker(home)
    return local_kafka.client_environment(home, principal, bootstrap) if bootstrap else {}


def fleet_settings(principal: str = CLI, home: Path | None = None) -> ServiceSettings:
    """The settings a CLI command runs with, connected as `principal` when the local broker is used."""
    home = default_home() if home is None else home
    bootstrap = local_broker(home)
    if bootstrap is None:
        return ServiceSettings()
    return ServiceSettings(kafka=local_kafka.client_settings(home, principal, bootstrap))


def admin_settings(home: Path | None = None) -> ServiceSettings:
    """The settings of the Kafka admin (the local broker's `admin`, or the explicit environment)."""
    return fleet_settings(ADMIN, home)
