"""The Wisconsin diagnostic breast cancer data set, as scikit-learn ships it, in snake_case.

569 fine-needle aspirates of breast masses; 30 measurements of the cell nuclei in a digitised
image of each (mean, standard error and worst value of ten properties such as radius, texture
and concave points). scikit-learn bundles the data inside the package, so nothing is downloaded.
Its `target` is 1 for benign, so the label here, `malignant`, is its complement.

Run `python generate.py` to rewrite `data/breast-cancer-biopsies.csv`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer

OUTPUT = Path(__file__).parent / "data" / "breast-cancer-biopsies.csv"


def snake_case(name: str) -> str:
    """`mean concave points` -> `mean_concave_points`."""
    return name.strip().replace(" ", "_")


def generate() -> pd.DataFrame:
    """One row per biopsy: an id, the 30 measurements and `malignant` (1) or benign (0)."""
    bunch = load_breast_cancer(as_frame=True)
    measurements = bunch.data.rename(columns=snake_case)
    malignant_code = list(bunch.target_names).index("malignant")
    frame = pd.DataFrame({"biopsy_id": [f"wdbc-{n:04d}" for n in range(len(measurements))]})
    frame = pd.concat([frame, measurements.reset_index(drop=True)], axis=1)
    frame["malignant"] = (bunch.target.to_numpy() == malignant_code).astype("int64")
    return frame


def main(output: Path = OUTPUT) -> None:
    """Write the dataset as CSV (LF line endings, so every platform produces the same bytes)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    generate().to_csv(output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
