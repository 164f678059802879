"""Settings come from FLEET_* variables; secrets never show in reprs or logs."""

from __future__ import annotations

import logging

import pytest
from faststream.security import SASLScram512
from pydantic import ValidationError

from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import KafkaSettings, ServiceSettings
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


def test_sasl_without_credentials_is_refused_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="needs FLEET_KAFKA_SASL_USERNAME and FLEET_KAFKA_SASL_PASS"):
        KafkaSettings()


def test_plaintext_needs_no_security_object() -> None:
    assert KafkaSettings().security() is None


def test_the_namer_builds_topic_group_and_dead_letter_names() -> None:
    namer = TopicNamer("staging.")
    assert namer.topic(DEPLOYMENTS) == "staging.fleet.deployments.v1"
    assert namer.group("serving", DEPLOYMENTS) == "staging.fleet.serving.deployments.v1"
    assert namer.dead_letter() == "staging.fleet.dead-letter.v1"
