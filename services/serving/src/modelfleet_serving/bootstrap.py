"""serving's wiring: the ports its data plane gets at startup (MLflow, trusted keys, tokens).

    bootstrap(settings, plane, store_metrics=store_metrics)                 # the service
    bootstrap(settings, plane, store_metrics=..., store=FakeStore(), auth=OpenDoor())   # a test

Nothing here runs at import: the app calls it from its startup hook, so a missing tokens or
trusted-keys file, or an unreadable MLflow password, stops the service naming it. Until then
the plane answers every request 503. Serving keeps no durable state: each replica reads the
compacted routing tables itself (in no consumer group) and holds its loaded models in memory.
"""

from __future__ import annotations

from modelfleet_common.mlflow_auth import use_mlflow_credentials

from .api import DataPlane
from .auth import Authenticator, authenticator_from_settings
from .config import ServingSettings
from .model_store import ModelStore, StoreMetrics


def bootstrap(
    settings: ServingSettings,
    plane: DataPlane,
    *,
    store_metrics: StoreMetrics,
    store: ModelStore | None = None,
    auth: Authenticator | None = None,
) -> None:
    """Give `plane` its doors and its model store; any port given replaces the real one."""
    # No tokens file and no explicit FLEET_SERVING_AUTH=disabled: serving does not start.
    plane.auth = auth or authenticator_from_settings(settings.serving_auth, settings.serving_tokens_file)
    if store is None:
        # Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
        use_mlflow_credentials(settings)
        store = ModelStore.from_settings(settings, store_metrics)
    plane.store = store
