"""The bundled dataset: scikit-learn's handwritten digits (8x8 images, 10 classes, MNIST-like).

It ships inside scikit-learn, so the lab needs no download. SageLab writes it once as a CSV with a
header (`pixel_0` ... `pixel_63`, `label`) at `sagelab/data/digits.csv` (package data, so an installed
`sagelab` has it too); CDK publishes that folder as the pipeline's default input and `sagelab run`
seeds its local S3 with it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sagelab.package_files import sagelab_file

DIGITS_CSV = sagelab_file("data/digits.csv")
DIGITS_TARGET_COLUMN = "label"


def digits_rows() -> tuple[list[str], list[list[int]]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    header = [f"pixel_{i}" for i in range(bunch.data.shape[1])] + [DIGITS_TARGET_COLUMN]
    rows = [[int(v) for v in features] + [int(target)] for features, target in zip(bunch.data, bunch.target, strict=False)]
    return header, rows


def write_digits_csv(path: Path = DIGITS_CSV) -> Path:
    header, rows = digits_rows()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path
