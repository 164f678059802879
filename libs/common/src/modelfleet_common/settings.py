"""Typed settings from the environment (`FLEET_` prefix); secrets stay `SecretStr`."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal, Self

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_SASL_CLASSES: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


class KafkaSettingsError(ValueError):
    """The Kafka settings cannot connect as they are; the message says which variable to set."""


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster (`FLEET_KAFKA_*`).

    Secure by default: SASL/SCRAM-SHA-512 over TLS, as one principal per service. PLAINTEXT (no
    principal, no encryption) is refused unless `FLEET_KAFKA_ALLOW_PLAINTEXT=true` says the cluster
    is secured some other way. Missing credentials are reported when a client connects
    (`check()`), not when settings are read, so documents (AsyncAPI) and unit tests need none.
    """

    model_config = SettingsConfigDict(env_prefix="FLEET_KAFKA_", extra="ignore")

    bootstrap: str = Field(default="127.0.0.1:9092", description="Comma-separated bootstrap servers.")
    security_protocol: SecurityProtocol = Field(default="SASL_SSL", description="Kafka security protocol.")
    allow_plaintext: bool = Field(
        default=False,
        description="Allow PLAINTEXT: no principal, no TLS (only for a cluster secured another way).",
    )
    sasl_mechanism: SaslMechanism = Field(default="SCRAM-SHA-512", description="SASL mechanism.")
    sasl_username: str | None = Field(default=None, description="SASL user: this service's principal.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password; never logged.")
    sasl_password_file: Path | None = Field(
        default=None,
        description="File holding the SASL password (a mounted Secret): keeps it out of the environment.",
    )
    ssl_cafile: Path | None = Field(default=None, description="CA bundle that signed the brokers.")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(default=None, description="Client key (mutual TLS).")
    ssl_key_password: SecretStr | None = Field(default=None, description="Password of the client key.")
    partitions: int = Field(default=3, ge=1, description="Partitions of topics modelfleet creates.")
    replication_factor: int = Field(default=1, ge=1, description="Replication of topics modelfleet creates.")

    @model_validator(mode="after")
    def _read_password_file(self) -> Self:
        if self.sasl_password is None and self.sasl_password_file is not None:
            try:
                secret = self.sasl_password_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(
                    f"FLEET_KAFKA_SASL_PASSWORD_FILE={self.sasl_password_file} cannot be read: "
                    f"{error.strerror or error}"
                ) from None
            self.sasl_password = SecretStr(secret)
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def check(self) -> None:
        """Raise `KafkaSettingsError` naming what to set if a client cannot connect with these."""
        if self.security_protocol == "PLAINTEXT" and not self.allow_plaintext:
            raise KafkaSettingsError(
                "FLEET_KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends events in clear with no principal, so "
                "the broker cannot enforce any ACL; use SASL_SSL (the local broker's default) or set "
                "FLEET_KAFKA_ALLOW_PLAINTEXT=true for a cluster you secure another way"
            )
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise KafkaSettingsError(
                f"FLEET_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "FLEET_KAFKA_SASL_USERNAME and FLEET_KAFKA_SASL_PASSWORD (or FLEET_KAFKA_SASL_PASSWORD_FILE;"
                " the local broker writes them under <home>/kafka/credentials/)"
            )
        if self.ssl_cafile is not None and not self.ssl_cafile.is_file():
            raise KafkaSettingsError(f"FLEET_KAFKA_SSL_CAFILE={self.ssl_cafile} is not a file")

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS context for SSL/SASL_SSL, verifying brokers against `ssl_cafile` (or system CAs)."""
        if not self.security_protocol.endswith("SSL"):
            return None
        cafile = str(self.ssl_cafile) if self.ssl_cafile and self.ssl_cafile.is_file() else None
        context = ssl.create_default_context(cafile=cafile)
        if self.ssl_certfile:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=password)
        return context

    def security(self) -> BaseSecurity | None:
        """The faststream security object for these settings (None for PLAINTEXT).

        Built even without credentials (to declare a broker); `check()` refuses to connect then.
        """
        context = self.ssl_context()
        if self.uses_sasl:
            sasl = _SASL_CLASSES[self.sasl_mechanism]
            return sasl(
                self.sasl_username or "",
                self.sasl_password.get_secret_value() if self.sasl_password else "",
                ssl_context=context,
                use_ssl=context is not None,
            )
        if context is not None:
            return BaseSecurity(ssl_context=context, use_ssl=True)
        return None


class StateSettings(BaseSettings):
    """Where a service keeps its durable state (`FLEET_STATE_*`; see `modelfleet_common.state`).

    Unset URL: a SQLite file in the state directory, for one replica. Several replicas share a
    PostgreSQL database, each service in its own schema.
    """

    model_config = SettingsConfigDict(env_prefix="FLEET_STATE_", extra="ignore")

    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the state engine without its password, e.g. "
            "postgresql+psycopg://trainer@postgres:5432/modelfleet; unset: SQLite in the state dir."
        ),
    )
    password: SecretStr | None = Field(default=None, description="Password of the URL's role; never logged.")
    password_file: Path | None = Field(
        default=None, description="File holding that password (a mounted Secret)."
    )
    schema_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FLEET_STATE_SCHEMA", "schema_name"),
        description="PostgreSQL schema of this service's tables (default: the service's name).",
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="Pooled connections per replica.")
    connect_timeout_seconds: float = Field(default=10.0, gt=0, description="Time to connect before failing.")
    idempotency_ttl_seconds: float = Field(
        default=14 * 86400.0,
        gt=0,
        description="How long a handled event's mark is kept (pruned after; longer than any redelivery).",
    )

    def secret(self) -> SecretStr | None:
        """The role's password: `password`, or read from `password_file` now (at connect time,
        never when settings are read at import, so a rotated Secret applies on the next start)."""
        if self.password is not None or self.password_file is None:
            return self.password
        try:
            return SecretStr(self.password_file.read_text(encoding="utf-8").strip())
        except OSError as error:
            raise ValueError(
                f"FLEET_STATE_PASSWORD_FILE={self.password_file} cannot be read: {error.strerror or error}"
            ) from None


class ServiceSettings(BaseSettings):
    """Settings every service shares (`FLEET_*`); services subclass it for their own."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    topic_prefix: str = Field(default="", description="Prefix of every topic and group (isolates fleets).")
    http_host: str = Field(default="127.0.0.1", description="Address of /healthz, /readyz, /metrics.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP endpoints.")
    log_level: str = Field(default="INFO", description="Log level of the service.")
    state_dir: Path = Field(default=Path(".local/state"), description="Where durable local state lives.")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="Where traces go; `otlp` honours OTEL_EXPORTER_OTLP_ENDPOINT."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Tries of a failing handler before dead-lettering."
    )
    retry_backoff_seconds: float = Field(default=0.2, gt=0, description="First retry delay; doubles per try.")
    consumer_workers: int = Field(
        default=1,
        ge=1,
        description="Consumers per subscribed topic that process partitions concurrently (heavy handlers).",
    )
    mlflow_tracking_uri: str = Field(
        default="http://127.0.0.1:5000", description="MLflow tracking server (runs, registry, artifacts)."
    )
    mlflow_username: str | None = Field(
        default=None,
        description="MLflow user this process signs in as (basic-auth app); needs the password file.",
    )
    mlflow_password_file: Path | None = Field(
        default=None,
        description="File with that user's MLflow password (read per request, kept out of the environment).",
    )
    trusted_keys_file: Path | None = Field(
        default=None,
        description="Base64 Ed25519 public keys (one per line) whose artifact signatures are accepted.",
    )
    chaos_kill_after_handling_marker: Path | None = Field(
        default=None,
        description=(
            "Fault injection for crash tests: if set and the file is absent, create it and SIGKILL "
            "the process after a handler succeeds, before its offset is committed."
        ),
    )
    lag_refresh_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often `fleet_consumer_lag` is measured (a ListOffsets per consumer).",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka connection.")
    state: StateSettings = Field(default_factory=StateSettings, description="Durable state engine.")
