"""The local fleet takes its policies and the demo's approver from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_devkit import fleet as local


def test_the_policy_directory_comes_from_the_environment(tmp_path: Path) -> None:
    default = local.fleet_environment(tmp_path, environ={})
    demo = local.fleet_environment(tmp_path, environ={"FLEET_POLICY_DIR": str(local.DEMO_POLICY_DIR)})
    assert default["FLEET_POLICY_DIR"] == str((local.REPO / "policies").resolve())
    assert demo["FLEET_POLICY_DIR"] == str(local.DEMO_POLICY_DIR.resolve())


def test_the_demo_approver_is_listed_once_with_its_own_key(tmp_path: Path) -> None:
    local.fleet_environment(tmp_path, environ={"FLEET_DEMO_APPROVER": "risk-officer"})
    signer, added = local.demo_approver(tmp_path, "risk-officer")
    assert not added
    lines = [
        line for line in local.approvers_file(tmp_path).read_text().splitlines() if line and line[0] != "#"
    ]
    assert lines == [f"risk-officer {signer.public_key_b64}"]


def test_an_approver_listed_with_another_key_is_refused(tmp_path: Path) -> None:
    local.approvers_file(tmp_path).write_text("risk-officer AAAA\n")
    with pytest.raises(ValueError, match="already lists approver 'risk-officer' with another key"):
        local.demo_approver(tmp_path, "risk-officer")
