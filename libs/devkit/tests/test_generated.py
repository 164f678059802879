"""A generator writes only stale files, and its `--check` names them with the command that remakes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_devkit.generated import generator_main, with_section


def _files(tmp_path: Path) -> dict[Path, str]:
    return {tmp_path / "a.yaml": "a: 1\n", tmp_path / "nested" / "b.json": "{}\n"}


def test_check_fails_naming_missing_and_stale_files_and_the_command_that_remakes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(tmp_path)
    (tmp_path / "a.yaml").write_text("a: 2\n")

    assert generator_main(lambda: files, description="test", remake="make things", argv=["--check"]) == 1

    error = capsys.readouterr().err
    assert "a.yaml" in error
    assert "b.json" in error
    assert "run `make things`" in error
    assert (tmp_path / "a.yaml").read_text() == "a: 2\n", "--check writes nothing"


def test_writing_makes_the_files_current_and_leaves_current_ones_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(tmp_path)
    (tmp_path / "a.yaml").write_text("a: 1\n")
    before = (tmp_path / "a.yaml").stat().st_mtime_ns

    assert generator_main(lambda: files, description="test", remake="make things", argv=[]) == 0

    assert (tmp_path / "nested" / "b.json").read_text() == "{}\n"
    assert (tmp_path / "a.yaml").stat().st_mtime_ns == before
    assert generator_main(lambda: files, description="test", remake="make things", argv=["--check"]) == 0
    printed = capsys.readouterr().out
    assert "current" in printed
    assert "wrote" in printed


def test_a_section_between_markers_is_replaced_and_missing_markers_are_named() -> None:
    document = "intro\n<!-- b -->\nold\n<!-- e -->\noutro\n"

    assert (
        with_section(document, "<!-- b -->", "<!-- e -->", "new\n")
        == "intro\n<!-- b -->\nnew\n<!-- e -->\noutro\n"
    )
    with pytest.raises(ValueError, match="<!-- e -->"):
        with_section("intro\n<!-- b -->\n", "<!-- b -->", "<!-- e -->", "new")
