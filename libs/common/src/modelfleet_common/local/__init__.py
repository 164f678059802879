"""Docker-free launchers for local development services (Kafka broker, MLflow server, PostgreSQL).

Run ``python -m modelfleet_common.local.kafka start``,
``python -m modelfleet_common.local.postgres start`` or
``python -m modelfleet_common.local.mlflow start``; state lives under ``$FLEET_LOCAL_HOME``
(default ``./.local``).
"""
