"""Settings come from FLEET_* variables; secrets never show in reprs or logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from faststream.security import SASLScram512
from pydantic import ValidationError

from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import KafkaSettings, KafkaSettingsError, ServiceSettings
from modelfleet_contracts.topics import DEPLOYMENTS


def test_settings_are_read_from_fleet_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("FLEET_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("FLEET_HTTP_PORT", "9100")
    settings = ServiceSettings()
    assert settings.kafka.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert (settings.topic_prefix, settings.http_port) == ("staging.", 9100)


def test_sasl_password_never_appears_in_reprs_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FLEET_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FLEET_KAFKA_SASL_USERNAME", "fleet")
    monkeypatch.setenv("FLEET_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    settings = ServiceSettings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s", settings)
    for text in (repr(settings), str(settings), settings.model_dump_json(), caplog.text):
        assert "hunter2-very-secret" not in text
    assert isinstance(settings.kafka.security(), SASLScram512)


def test_the_default_is_sasl_ssl_and_connecting_without_credentials_names_the_variables() -> None:
    settings = KafkaSettings()
    assert settings.security_protocol == "SASL_SSL"
    with pytest.raises(KafkaSettingsError, match="needs FLEET_KAFKA_SASL_USERNAME and FLEET_KAFKA_SASL_PASS"):
        settings.check()


def test_plaintext_is_refused_unless_explicitly_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(KafkaSettingsError, match="FLEET_KAFKA_ALLOW_PLAINTEXT=true"):
        KafkaSettings().check()
    monkeypatch.setenv("FLEET_KAFKA_ALLOW_PLAINTEXT", "true")
    KafkaSettings().check()
    assert KafkaSettings().security() is None


def test_the_password_can_come_from_a_file_and_stays_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-a-mounted-secret\n")
    monkeypatch.setenv("FLEET_KAFKA_SASL_USERNAME", "trainer")
    monkeypatch.setenv("FLEET_KAFKA_SASL_PASSWORD_FILE", str(secret))
    settings = KafkaSettings()
    settings.check()
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "s3cret-from-a-mounted-secret"
    assert "s3cret" not in repr(settings)


def test_an_unreadable_password_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEET_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match=r"FLEET_KAFKA_SASL_PASSWORD_FILE=.*absent cannot be read"):
        KafkaSettings()


def test_the_namer_builds_topic_group_and_dead_letter_names() -> None:
    namer = TopicNamer("staging.")
    assert namer.topic(DEPLOYMENTS) == "staging.fleet.deployments.v1"
    assert namer.group("serving", DEPLOYMENTS) == "staging.fleet.serving.deployments.v1"
    assert namer.dead_letter() == "staging.fleet.dead-letter.v1"
    assert namer.group_prefix("serving") == "staging.fleet.serving."
