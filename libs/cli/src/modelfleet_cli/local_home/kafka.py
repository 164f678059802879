"""The local broker's files under ``<home>/kafka``: whether it runs and is secured, and the
credentials each principal connects with (the devkit's `modelfleet_devkit.kafka` starts it and
`modelfleet_devkit.kafka_security` makes these files).

- ``tls/ca.pem``: the CA certificate clients verify the broker with (``tls/ca.key`` and
  ``tls/broker.pem`` are the broker's own);
- ``credentials/<principal>.password`` (``0600``) for ``admin`` (the broker's super user) and every
  principal of the topic catalog (each service and ``cli``);
- ``data/.modelfleet-mode``: ``sasl_ssl`` once the storage was formatted for a secured broker.

`client_environment` gives a process the `FLEET_KAFKA_*` settings of one principal, with the
password as a file (it never goes into the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelfleet_common.settings import KafkaSettings
from modelfleet_contracts.topics import PRINCIPALS

from . import ProcessFiles

NAME = "kafka"
#: The local broker's super user: provisions topics and ACLs, nothing else uses it.
ADMIN = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: Written into ``data/`` once formatted: the mode its metadata (SCRAM users) was made for.
MODE_FILE = ".modelfleet-mode"


def root(home: Path) -> Path:
    """Where the local broker of ``home`` keeps its files."""
    return Path(home).expanduser().resolve() / NAME


def process(kafka_root: Path) -> ProcessFiles:
    """The broker's pid, endpoint and log files."""
    # server.properties' absolute path is unique per home, so it identifies our JVM.
    return ProcessFiles(NAME, kafka_root, marker=str(kafka_root / "server.properties"))


@dataclass(frozen=True)
class KafkaCredentials:
    """Paths of the local broker's TLS material and credentials."""

    root: Path

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def broker_pem(self) -> Path:
        return self.tls_dir / "broker.pem"

    def password_file(self, principal: str) -> Path:
        return self.credentials_dir / f"{principal}.password"

    def password(self, principal: str) -> str:
        return self.password_file(principal).read_text(encoding="utf-8").strip()

    @property
    def principals(self) -> tuple[str, ...]:
        return (ADMIN, *PRINCIPALS)

    def is_complete(self) -> bool:
        """Whether the CA, the broker certificate and every principal's password exist."""
        files = [self.ca_file, self.broker_pem, *(self.password_file(p) for p in self.principals)]
        return all(path.is_file() for path in files)

    def client_environment(self, principal: str, bootstrap: str) -> dict[str, str]:
        """The `FLEET_KAFKA_*` settings that connect as `principal` (SASL_SSL, SCRAM-SHA-512)."""
        if principal not in self.principals:
            raise ValueError(f"the local broker has no principal {principal!r}: {list(self.principals)}")
        return {
            "FLEET_KAFKA_BOOTSTRAP": bootstrap,
            "FLEET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FLEET_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "FLEET_KAFKA_SASL_USERNAME": principal,
            "FLEET_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(principal)),
            "FLEET_KAFKA_SSL_CAFILE": str(self.ca_file),
        }


def client_environment(home: Path, principal: str, bootstrap: str) -> dict[str, str]:
    """The ``FLEET_KAFKA_*`` variables a process of ``principal`` connects to this broker with."""
    return KafkaCredentials(root(home)).client_environment(principal, bootstrap)


def client_settings(home: Path, principal: str, bootstrap: str) -> KafkaSettings:
    """Settings that connect to the local broker of ``home`` as ``principal``."""
    env = client_environment(home, principal, bootstrap)
    return KafkaSettings.model_validate(
        {key.removeprefix("FLEET_KAFKA_").lower(): v for key, v in env.items()}
    )


def admin_settings(home: Path, bootstrap: str) -> KafkaSettings:
    """Settings that connect to the local broker of ``home`` as its ``admin`` super user."""
    return client_settings(home, ADMIN, bootstrap)


def is_secured(home: Path) -> bool:
    """Whether the broker of ``home`` was formatted secured (SASL_SSL and ACLs)."""
    marker = root(home) / "data" / MODE_FILE
    return marker.is_file() and marker.read_text().strip() == "sasl_ssl"


def endpoint(home: Path) -> str | None:
    """The bootstrap of the broker of ``home`` if it runs."""
    return process(root(home)).running_endpoint()
