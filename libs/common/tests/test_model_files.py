"""Only skops files whose declared trusted types are scikit-learn, numpy or scipy are loaded."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
import yaml
from sklearn.tree import DecisionTreeRegressor

from modelfleet_common.model_files import ModelRefused, is_allowed_type, load_skops_model, verify_digest
from modelfleet_common.signing import IntegrityError, directory_digest


@pytest.fixture(scope="module")
def saved_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tree") / "model"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 2))
    tree = DecisionTreeRegressor(max_depth=3).fit(features, features[:, 0])
    mlflow.sklearn.save_model(
        tree,
        str(directory),
        serialization_format="skops",
        skops_trusted_types=["sklearn.tree._tree.Tree"],
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


def test_a_model_with_declared_scikit_learn_types_loads(saved_tree: Path) -> None:
    model = load_skops_model(saved_tree)
    assert model.predict(np.zeros((1, 2))).shape == (1,)


def test_a_model_that_trusts_a_type_outside_the_allowlist_is_refused(
    saved_tree: Path, tmp_path: Path
) -> None:
    directory = copy_of(saved_tree, tmp_path / "model")
    rewrite_flavor(directory, skops_trusted_types=["sklearn.tree._tree.Tree", "builtins.eval", "os.system"])
    with pytest.raises(
        ModelRefused, match=r"outside scikit-learn/numpy/scipy as trusted: builtins\.eval, os\.system"
    ):
        load_skops_model(directory)


def test_a_model_file_holding_an_undeclared_type_is_refused(saved_tree: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_tree, tmp_path / "model")
    rewrite_flavor(directory, skops_trusted_types=[])
    with pytest.raises(ModelRefused, match=r"holds types it does not declare as trusted"):
        load_skops_model(directory)


def test_a_pickled_model_is_never_loaded(saved_tree: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_tree, tmp_path / "model")
    rewrite_flavor(directory, serialization_format="cloudpickle")
    with pytest.raises(ModelRefused, match="only skops is loaded, never pickle"):
        load_skops_model(directory)


def test_a_flavor_pointing_outside_the_model_directory_is_refused(saved_tree: Path, tmp_path: Path) -> None:
    directory = copy_of(saved_tree, tmp_path / "model")
    (tmp_path / "elsewhere.skops").write_bytes((directory / "model.skops").read_bytes())
    rewrite_flavor(directory, pickled_model="../elsewhere.skops")
    with pytest.raises(ModelRefused, match="not a model file"):
        load_skops_model(directory)


def test_the_digest_must_match_before_anything_is_loaded(saved_tree: Path) -> None:
    with pytest.raises(IntegrityError, match="differs from the trainer's"):
        verify_digest(saved_tree, "0" * 64, expected_from="the trainer's")


def test_matching_files_return_their_digest(saved_tree: Path) -> None:
    digest = directory_digest(saved_tree)
    assert verify_digest(saved_tree, digest) == digest


def test_the_allowlist_admits_the_scientific_stack_but_not_its_file_readers() -> None:
    assert is_allowed_type("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
    assert is_allowed_type("numpy.dtype")
    assert is_allowed_type("builtins.slice")
    assert not is_allowed_type("numpy.load")
    assert not is_allowed_type("numpy.f2py.compile")
    assert not is_allowed_type("sklearnx.Evil")
    assert not is_allowed_type("builtins.exec")
