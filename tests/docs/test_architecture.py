"""docs/architecture.md's service table says what the services' AsyncAPI documents say."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from modelfleet_cli.local_home import REPO

GENERATOR = REPO / "docs" / "service_table.py"


@pytest.fixture(scope="module")
def service_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_table", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_service_table_is_what_the_asyncapi_documents_give() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_service_s_row_names_what_its_app_receives_and_sends(service_table: ModuleType) -> None:
    document = yaml.safe_load((REPO / "docs" / "asyncapi" / "serving.yaml").read_text())
    consumed, published = service_table.topics_of(document)
    assert consumed == ["deployments"]
    assert set(published) == {"prediction-logs", "ground-truth", "artifact-refusals"}


def test_a_changed_document_makes_the_table_stale(service_table: ModuleType, tmp_path: Path) -> None:
    shutil.copytree(REPO / "docs" / "asyncapi", tmp_path, dirs_exist_ok=True)
    path = tmp_path / "registry.yaml"
    document = yaml.safe_load(path.read_text())
    document["operations"] = {
        name: operation for name, operation in document["operations"].items() if operation["action"] == "send"
    }
    path.write_text(yaml.safe_dump(document))
    committed = service_table.current((REPO / "docs" / "architecture.md").read_text())
    stale = service_table.render(tmp_path)
    assert stale != committed
    assert "| registry | - | model-registrations |" in stale


def test_a_topic_outside_the_catalog_is_named(service_table: ModuleType) -> None:
    document = {
        "channels": {"x": {"address": "fleet.nowhere.v1"}},
        "operations": {"x:send": {"action": "send", "channel": {"$ref": "#/channels/x"}}},
    }
    with pytest.raises(ValueError, match=r"fleet\.nowhere\.v1"):
        service_table.topics_of(document)
