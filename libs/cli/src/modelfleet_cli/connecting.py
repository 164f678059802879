"""Which Kafka principal a CLI command connects as, and with which credentials.

An explicit configuration wins: any `FLEET_KAFKA_SECURITY_PROTOCOL` or `FLEET_KAFKA_SASL_USERNAME`
in the environment is used as it is (a cluster of your own). Otherwise, when the local broker of
`FLEET_LOCAL_HOME` (`make kafka`) has credentials, the command connects to it as the `cli`
principal (or `admin` for `modelfleet provision`), with the password read from its 0600 file.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelfleet_common.local import kafka as local_kafka
from modelfleet_common.local._process import default_home
from modelfleet_common.local.kafka_security import ADMIN, LocalSecurity
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts.topics import CLI

_EXPLICIT = ("FLEET_KAFKA_SECURITY_PROTOCOL", "FLEET_KAFKA_SASL_USERNAME")


def fleet_settings(principal: str = CLI, home: Path | None = None) -> ServiceSettings:
    """The settings a CLI command runs with, connected as `principal` when the local broker is used."""
    if any(os.environ.get(name) for name in _EXPLICIT):
        return ServiceSettings()
    home = default_home() if home is None else home
    security = LocalSecurity(home.expanduser().resolve() / local_kafka.NAME)
    if not security.is_complete():
        return ServiceSettings()
    bootstrap = os.environ.get("FLEET_KAFKA_BOOTSTRAP") or local_kafka.endpoint(home)
    kafka = local_kafka.client_settings(home, principal, bootstrap or ServiceSettings().kafka.bootstrap)
    return ServiceSettings(kafka=kafka)


def admin_settings(home: Path | None = None) -> ServiceSettings:
    """The settings of the Kafka admin (the local broker's `admin`, or the explicit environment)."""
    return fleet_settings(ADMIN, home)
