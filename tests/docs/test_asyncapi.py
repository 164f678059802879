"""The committed AsyncAPI documents are what the service apps generate today."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelfleet_cli.local_home import REPO
from modelfleet_devkit.fleet import SERVICES, service_python


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_asyncapi_document_is_current(service: str, tmp_path: Path) -> None:
    generated = tmp_path / f"{service}.yaml"
    subprocess.run(
        [
            service_python(service),
            "-m",
            "modelfleet_common.asyncapi",
            f"modelfleet_{service}.app:app",
            str(generated),
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    committed = REPO / "docs" / "asyncapi" / f"{service}.yaml"
    assert generated.read_text() == committed.read_text(), f"run `make asyncapi` and commit {committed}"
