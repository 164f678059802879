"""Only skops files whose declared trusted types are in the fleet's exact allow-list are loaded."""

from __future__ import annotations

import importlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pytest
import skops.io
import yaml
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline

from modelfleet_common.model_files import ModelRefused, is_allowed_type, load_skops_model, verify_digest
from modelfleet_common.signing import IntegrityError, directory_digest
from modelfleet_common.skops_types import (
    FLEET_TRUSTED_TYPES,
    HIST_GRADIENT_BOOSTING_TYPES,
    TRUSTED_FUNCTIONS,
)

#: What the fleet-like model below declares: the boosting templates' exact tuple.
DECLARED = list(HIST_GRADIENT_BOOSTING_TYPES)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Imputer and histogram gradient boosting, saved the way the trainer saves a template's model."""
    directory = tmp_path_factory.mktemp("boosting") / "model"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 2))
    pipeline = make_pipeline(SimpleImputer(), HistGradientBoostingRegressor(max_iter=5))
    pipeline.fit(features, features[:, 0])
    mlflow.sklearn.save_model(
        pipeline,
        str(directory),
        serialization_format="skops",
        skops_trusted_types=DECLARED,
        pip_requirements=["scikit-learn"],
    )
    return directory


def rewrite_flavor(directory: Path, **changes: object) -> None:
    mlmodel = yaml.safe_load((directory / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"].update(changes)
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def copy_of(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def plant_call(directory: Path, target: str, *args: object) -> None:
    """Make loading the model call `target` (`module.name`) with `args`, as a crafted file would.

    skops's `ConstructorFromReduceNode` calls the object it names with arguments from the file; the
    call is planted as an extra attribute of the pipeline, the rest of the file is left as it was.
    """
    module, name = target.rsplit(".", 1)
    path = directory / "model.skops"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(io.BytesIO(skops.io.dumps(args))) as archive:
        arguments = json.loads(archive.read("schema.json"))
    for key in ("protocol", "_skops_version"):
        arguments.pop(key)
    schema = json.loads(members["schema.json"])
    # skops memoizes loaded objects by `__id__` (the saver's `id()`s): ids of the arguments dumped
    # here could equal a model object's (memory reused in this process), and the loader would then
    # hand back that object. Give the planted nodes ids the file does not use.
    fresh = iter(range(max(_ids(schema), default=0) + 1, 2**62))
    _renumber(arguments, fresh)
    attributes = schema["content"]
    attributes["content"]["_planted"] = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": arguments,
        "__id__": next(fresh),
    }
    key_type = {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode", "__id__": next(fresh)}
    attributes["key_types"]["content"].append(key_type)
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, data in members.items():
            archive.writestr(filename, data)


def _ids(node: object) -> list[int]:
    if isinstance(node, dict):
        found = [node["__id__"]] if isinstance(node.get("__id__"), int) else []
        return found + [i for value in node.values() for i in _ids(value)]
    if isinstance(node, list):
        return [i for value in node for i in _ids(value)]
    return []


def _renumber(node: object, fresh: Iterator[int]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("__id__"), int):
            node["__id__"] = next(fresh)
        for value in node.values():
            _renumber(value, fresh)
    elif isinstance(node, list):
        for value in node:
            _renumber(value, fresh)


@pytest.fixture
def skops_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files skops was asked to load (it still loads them)."""
    calls: list[Path] = []
    real_load = skops.io.load

    def spy(file: Path, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(file))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(skops.io, "load", spy)
    return calls


def test_a_model_declaring_only_fleet_types_loads(saved_model: Path) -> None:
    model = load_skops_model(saved_model)
    assert model.predict(np.zeros((1, 2))).shape == (1,)


def test_the_planted_call_runs_when_skops_itself_is_told_to_trust_it(
    saved_model: Path, tmp_path: Path
) -> None:
    """The attack the tests below refuse is live: trusted by name, numpy.savetxt writes a file."""
    directory = copy_of(saved_model, tmp_path / "model")
    written = tmp_path / "written-during-load.txt"
    plant_call(directory, "numpy.savetxt", str(written), [["pwned"]], "%s")

    skops.io.load(directory / "model.skops", trusted=[*DECLARED, "numpy.savetxt"])

    assert written.read_text() == "pwned\n"


@pytest.fixture
def victims(tmp_path: Path) -> dict[str, Path]:
    """Files and a directory a planted call would write, read or delete."""
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "data.csv").write_text("1\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("FLEET_KAFKA_SASL_PASSWORD=hunter2\n")
    return {"written": tmp_path / "written.txt", "dir": kept, "file": kept / "data.csv", "secret": secret}


#: Declared callable → the arguments a crafted file calls it with (None: declared only, as calling
#: it would need the network or a private signature).
ATTACKS: dict[str, Callable[[dict[str, Path]], tuple[object, ...] | None]] = {
    "numpy.savetxt": lambda v: (str(v["written"]), [["pwned"]], "%s"),
    "numpy.loadtxt": lambda v: (str(v["secret"]),),
    "shutil.rmtree": lambda v: (str(v["dir"]),),
    "shutil._rmtree_safe_fd": lambda v: None,
    "os.remove": lambda v: (str(v["file"]),),
    "posix.remove": lambda v: (str(v["file"]),),
    "os.unlink": lambda v: (str(v["file"]),),
    "builtins.eval": lambda v: (f"__import__('pathlib').Path({str(v['written'])!r}).touch()",),
    "sklearn.datasets.fetch_openml": lambda v: None,
}


@pytest.mark.parametrize("declared", sorted(ATTACKS))
def test_a_model_declaring_a_callable_as_trusted_is_refused_and_nothing_happens(
    declared: str,
    saved_model: Path,
    tmp_path: Path,
    victims: dict[str, Path],
    skops_loads: list[Path],
) -> None:
    directory = copy_of(saved_model, tmp_path / "model")
    arguments = ATTACKS[declared](victims)
    if arguments is not None:
        plant_call(directory, declared, *arguments)
    rewrite_flavor(directory, skops_trusted_types=[*DECLARED, declared])

    with pytest.raises(
        ModelRefused, match=rf"outside the fleet's skops allow-list as trusted: {declared} \("
    ):
        load_skops_model(directory)

    assert skops_loads == []
    assert not victims["written"].exists()
    assert victims["file"].read_text() == "1\n"
    assert victims["dir"].is_dir()


def test_every_type_outside_the_allowlist_is_named(saved_model: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_model, tmp_path / "model")
    rewrite_flavor(directory, skops_trusted_types=[*DECLARED, "os.system", "builtins.eval", "os.system"])
    with pytest.raises(
        ModelRefused, match=r"as trusted: builtins\.eval, os\.system \(allowed: numpy\.dtype, "
    ):
        load_skops_model(directory)


@pytest.mark.parametrize("planted", ["numpy.savetxt", "builtins.eval"])
def test_a_file_holding_a_callable_it_does_not_declare_is_refused_by_skops_and_nothing_happens(
    planted: str, saved_model: Path, tmp_path: Path, victims: dict[str, Path], skops_loads: list[Path]
) -> None:
    directory = copy_of(saved_model, tmp_path / "model")
    arguments = ATTACKS[planted](victims)
    assert arguments is not None
    plant_call(directory, planted, *arguments)

    with pytest.raises(ModelRefused, match=rf"holds types it does not declare as trusted: .*'{planted}'"):
        load_skops_model(directory)

    assert skops_loads == [directory / "model.skops"]  # skops read it, and refused it before building
    assert not victims["written"].exists()


def test_a_file_holding_an_undeclared_fleet_type_is_refused(saved_model: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_model, tmp_path / "model")
    rewrite_flavor(directory, skops_trusted_types=["numpy.dtype"])
    with pytest.raises(ModelRefused, match=r"does not declare as trusted: .*TreePredictor"):
        load_skops_model(directory)


def test_a_pickled_model_is_never_loaded(saved_model: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_model, tmp_path / "model")
    rewrite_flavor(directory, serialization_format="cloudpickle")
    with pytest.raises(ModelRefused, match="only skops is loaded, never pickle"):
        load_skops_model(directory)


def test_a_flavor_pointing_outside_the_model_directory_is_refused(saved_model: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_model, tmp_path / "model")
    (tmp_path / "elsewhere.skops").write_bytes((directory / "model.skops").read_bytes())
    rewrite_flavor(directory, pickled_model="../elsewhere.skops")
    with pytest.raises(ModelRefused, match="not a model file"):
        load_skops_model(directory)


def test_the_digest_must_match_before_anything_is_loaded(saved_model: Path) -> None:
    with pytest.raises(IntegrityError, match="differs from the trainer's"):
        verify_digest(saved_model, "0" * 64, expected_from="the trainer's")


def test_matching_files_return_their_digest(saved_model: Path) -> None:
    digest = directory_digest(saved_model)
    assert verify_digest(saved_model, digest) == digest


def test_the_allowlist_is_exact_names_not_prefixes() -> None:
    assert is_allowed_type("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
    assert is_allowed_type("numpy.dtype")
    assert not is_allowed_type("numpy.")
    assert not is_allowed_type("numpy.dtype.mro")
    assert not is_allowed_type("numpy.savetxt")
    assert not is_allowed_type("scipy.io.loadmat")
    assert not is_allowed_type("sklearn.tree._tree.Tree")
    assert not is_allowed_type("builtins.slice")


@pytest.mark.parametrize("type_path", sorted(FLEET_TRUSTED_TYPES))
def test_every_allowed_type_is_a_class_except_the_justified_functions(type_path: str) -> None:
    module, name = type_path.rsplit(".", 1)
    resolved = getattr(importlib.import_module(module), name)
    assert isinstance(resolved, type) or type_path in TRUSTED_FUNCTIONS, type_path
    assert TRUSTED_FUNCTIONS <= FLEET_TRUSTED_TYPES
