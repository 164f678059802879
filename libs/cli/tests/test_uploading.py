"""`modelfleet ingest` and `modelfleet apply` hand batches to the fleet through the dataset store:
the file's bytes are copied into `<FLEET_DATA_DIR>/uploads/` under their sha256 (capped at the
size ingest reads), and the event names that copy, so a fleet in a cluster reads what a laptop sent."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import fsspec
import pytest
from typer.testing import CliRunner

from modelfleet_cli.main import app
from modelfleet_cli.uploading import Uploader, UploadFailed, UploadSettings, upload_batches
from modelfleet_contracts import DataBatchSubmitted, RetrainRequested

CSV = b"machine,temperature,failed\nm1,71.5,0\n"


@pytest.fixture
def laptop_file(tmp_path: Path) -> Path:
    path = tmp_path / "laptop" / "new rows.csv"
    path.parent.mkdir()
    path.write_bytes(CSV)
    return path


def test_a_file_is_copied_into_the_upload_area_under_its_hash(tmp_path: Path, laptop_file: Path) -> None:
    upload = Uploader(str(tmp_path / "store"), max_bytes=1024)

    uri = upload("machines", str(laptop_file))
    again = upload("machines", str(laptop_file))

    digest = hashlib.sha256(CSV).hexdigest()
    assert uri == str(tmp_path / "store" / "uploads" / "machines" / f"{digest}-new_rows.csv")
    assert again == uri
    assert Path(uri).read_bytes() == CSV
    assert [path.name for path in (tmp_path / "store" / "uploads" / "machines").iterdir()] == [Path(uri).name]


def test_a_relative_store_gives_an_absolute_path_ingest_can_open_from_anywhere(
    tmp_path: Path, laptop_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = Uploader(".local/data", max_bytes=1024)("machines", str(laptop_file))
    assert Path(uri).is_absolute()
    assert Path(uri).parent == tmp_path / ".local" / "data" / "uploads" / "machines"


def test_an_object_store_gets_the_bytes_and_the_event_its_uri(laptop_file: Path) -> None:
    store = f"memory:///fleet-{uuid.uuid4().hex}"

    uri = Uploader(store, max_bytes=1024)("machines", f"file://{laptop_file}")

    assert uri.startswith(f"{store}/uploads/machines/")
    with fsspec.open(uri, "rb") as uploaded:
        assert uploaded.read() == CSV


def test_a_file_above_the_limit_is_refused_and_nothing_is_uploaded(tmp_path: Path, laptop_file: Path) -> None:
    with pytest.raises(UploadFailed, match=r"larger than 10 bytes.*FLEET_INGEST_MAX_BYTES"):
        Uploader(str(tmp_path / "store"), max_bytes=10)("machines", str(laptop_file))
    assert not (tmp_path / "store").exists()


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UploadFailed, match=r"gone\.csv does not exist"):
        Uploader(str(tmp_path / "store"), max_bytes=10)("machines", str(tmp_path / "gone.csv"))


def test_the_store_is_fleet_data_dir_else_the_local_fleet_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEET_DATA_DIR", raising=False)
    monkeypatch.setenv("FLEET_LOCAL_HOME", str(tmp_path / "home"))
    # As the local fleet (`modelfleet_devkit.fleet`) sets it.
    assert UploadSettings().data_dir == str(tmp_path / "home" / "data")
    monkeypatch.setenv("FLEET_DATA_DIR", "s3://bucket/fleet")
    monkeypatch.setenv("FLEET_INGEST_MAX_BYTES", "100")
    assert (UploadSettings().data_dir, UploadSettings().ingest_max_bytes) == ("s3://bucket/fleet", 100)


def test_apply_points_each_batch_at_its_upload_and_leaves_other_events_alone(
    tmp_path: Path, laptop_file: Path
) -> None:
    batch = DataBatchSubmitted(producer="test", dataset="machines", uri=str(laptop_file), mode="append")
    other = RetrainRequested(producer="test", model="m", reason="manual")

    uploaded, unchanged = upload_batches([batch, other], Uploader(str(tmp_path / "store"), max_bytes=1024))

    assert isinstance(uploaded, DataBatchSubmitted)
    assert uploaded.uri.startswith(str(tmp_path / "store" / "uploads" / "machines" / ""))
    assert (uploaded.event_id, uploaded.mode, uploaded.dataset) == (batch.event_id, "append", "machines")
    assert unchanged is other


def test_modelfleet_ingest_uploads_the_file_before_publishing(tmp_path: Path, laptop_file: Path) -> None:
    env = {
        "COLUMNS": "250",
        "FLEET_DATA_DIR": str(tmp_path / "store"),
        "FLEET_LOCAL_HOME": str(tmp_path / "home"),
        "FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # no broker: the upload is what is checked here
    }
    result = CliRunner().invoke(app, ["ingest", "machines", str(laptop_file), "--no-wait"], env=env)

    [uploaded] = (tmp_path / "store" / "uploads" / "machines").iterdir()
    assert uploaded.read_bytes() == CSV
    assert f"uploaded {laptop_file} to {uploaded}" in " ".join(result.output.split())
    assert "could not publish to Kafka" in result.output


def test_modelfleet_ingest_refuses_a_file_above_the_limit(tmp_path: Path, laptop_file: Path) -> None:
    env = {"COLUMNS": "250", "FLEET_DATA_DIR": str(tmp_path / "store"), "FLEET_INGEST_MAX_BYTES": "10"}
    result = CliRunner().invoke(app, ["ingest", "machines", str(laptop_file), "--no-wait"], env=env)
    assert result.exit_code == 2
    assert "FLEET_INGEST_MAX_BYTES" in result.output
    assert not (tmp_path / "store").exists()
