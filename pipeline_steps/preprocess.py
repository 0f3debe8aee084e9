"""Preprocess step: raw table -> stratified train/validation/test splits + a portable feature spec.

Runs unchanged in the SageMaker SKLearn processing container (1.4-2), under `sagelab run`, and is
imported by tests and by `inference.py`. Everything that a model needs to turn a *raw* row into a
feature vector is written to `feature_spec.json` (plain JSON, never pickle), fitted on the training
split only, so the endpoint accepts raw rows and every container applies exactly the same transform.

Container contract (paths are passed as arguments by the pipeline definition):
    --input-dir   /opt/ml/processing/input/data    CSV (header) / MNIST-style CSV / Parquet files
    --output-dir  /opt/ml/processing/output        train/ validation/ test/ spec/
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPEC_FORMAT_VERSION = 1
SPEC_FILE_NAME = "feature_spec.json"
SPLIT_FILE_NAMES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}
# The column that holds the encoded target in the split files written for training/evaluation.
ENCODED_TARGET_COLUMN = "__target__"
PROBLEM_TYPES = ("multiclass", "binary", "regression")
INPUT_FORMATS = ("auto", "csv", "csv-label-first", "parquet")
# An object column whose values are numbers this often is a numeric column with garbage in it,
# not a categorical column: failing loudly beats one-hot encoding "12", "13", "1x".
NUMERIC_GARBAGE_SHARE = 0.9
MAX_CLASSES_FOR_AUTO_CLASSIFICATION = 30


class DataError(ValueError):
    """Input data that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn a raw row into the model's feature vector, as plain JSON."""

    target_column: str
    problem_type: str
    feature_columns: list[str]
    numeric_impute: dict[str, float]
    categorical_vocabulary: dict[str, list[str]]
    categorical_impute: dict[str, str]
    labels: list[str] = field(default_factory=list)

    @property
    def encoded_columns(self) -> list[str]:
        columns: list[str] = []
        for name in self.feature_columns:
            if name in self.categorical_vocabulary:
                columns.extend(f"{name}={value}" for value in self.categorical_vocabulary[name])
            else:
                columns.append(name)
        return columns

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "target_column": self.target_column,
            "problem_type": self.problem_type,
            "feature_columns": self.feature_columns,
            "numeric_impute": self.numeric_impute,
            "categorical_vocabulary": self.categorical_vocabulary,
            "categorical_impute": self.categorical_impute,
            "labels": self.labels,
            "encoded_columns": self.encoded_columns,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        version = data.get("format_version")
        if version != SPEC_FORMAT_VERSION:
            raise DataError(f"feature spec format_version {version!r} is not supported (expected {SPEC_FORMAT_VERSION})")
        return cls(
            target_column=data["target_column"],
            problem_type=data["problem_type"],
            feature_columns=list(data["feature_columns"]),
            numeric_impute={k: float(v) for k, v in data["numeric_impute"].items()},
            categorical_vocabulary={k: list(v) for k, v in data["categorical_vocabulary"].items()},
            categorical_impute=dict(data["categorical_impute"]),
            labels=list(data.get("labels", [])),
        )

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SPEC_FILE_NAME
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: Path) -> FeatureSpec:
        return cls.from_json(json.loads((Path(directory) / SPEC_FILE_NAME).read_text()))

    # -- applying the spec -------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw feature columns (by name) -> float32 matrix in `encoded_columns` order."""
        missing = [name for name in self.feature_columns if name not in frame.columns]
        if missing:
            raise DataError(f"missing feature column(s) {missing}; expected columns {self.feature_columns}")
        numeric = self._numeric_block(frame)
        if not self.categorical_vocabulary:
            return numeric  # all-numeric data (the digits): one vectorised block, the serving hot path
        blocks: list[np.ndarray] = []
        numeric_position = 0
        for name in self.feature_columns:
            if name not in self.categorical_vocabulary:
                blocks.append(numeric[:, numeric_position : numeric_position + 1])
                numeric_position += 1
                continue
            vocabulary = self.categorical_vocabulary[name]
            column = frame[name]
            values = column.astype("object").where(column.notna(), self.categorical_impute[name]).map(_category_key)
            block = np.zeros((len(frame), len(vocabulary)), dtype=np.float32)
            index = {value: position for position, value in enumerate(vocabulary)}
            for row, value in enumerate(values):
                position = index.get(value)  # unseen categories encode as all zeros
                if position is not None:
                    block[row, position] = 1.0
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.zeros((len(frame), 0), dtype=np.float32)

    def _numeric_block(self, frame: pd.DataFrame) -> np.ndarray:
        names = [name for name in self.feature_columns if name not in self.categorical_vocabulary]
        if not names:
            return np.zeros((len(frame), 0), dtype=np.float32)
        block = frame[names]
        if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in block.dtypes):
            block = pd.DataFrame({name: _to_numeric_or_fail(block[name], name, row_offset=0) for name in names})
        values = block.to_numpy(dtype=np.float64, na_value=np.nan)
        gaps = np.isnan(values)
        if gaps.any():
            fill = np.array([self.numeric_impute[name] for name in names])
            values = np.where(gaps, fill, values)
        return values.astype(np.float32)

    def rows_to_frame(self, rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
        """Positional rows (in `feature_columns` order) -> a frame with the raw column names."""
        width = len(self.feature_columns)
        for number, row in enumerate(rows):
            if len(row) != width:
                raise DataError(f"row {number} has {len(row)} values; expected {width} ({', '.join(self.feature_columns[:5])}{', ...' if width > 5 else ''})")
        return pd.DataFrame(list(rows), columns=self.feature_columns)

    def encode_target(self, target: pd.Series) -> np.ndarray:
        if self.problem_type == "regression":
            return _to_numeric_or_fail(target, self.target_column, row_offset=0).to_numpy(dtype=np.float64)
        index = {label: position for position, label in enumerate(self.labels)}
        keys = target.map(_category_key)
        unknown = sorted(set(keys) - set(index))
        if unknown:
            raise DataError(f"target column {self.target_column!r} has label(s) {unknown[:5]} not seen in training")
        return keys.map(index).to_numpy(dtype=np.int64)


def _category_key(value: Any) -> str:
    """Categories are compared as text; 3, 3.0 and "3" are one category, as a CSV reader sees them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (np.floating,)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _to_numeric_or_fail(column: pd.Series, name: str, row_offset: int, source: str = "") -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    garbage = converted.isna() & column.notna()
    if garbage.any():
        position = int(np.flatnonzero(garbage.to_numpy())[0])
        where = f" in {source}" if source else ""
        raise DataError(f"column {name!r} is numeric but row {position + row_offset} has {column.iloc[position]!r}{where}; expected a number or an empty cell")
    infinite = np.isinf(converted.to_numpy(dtype=np.float64, na_value=np.nan))
    if infinite.any():
        position = int(np.flatnonzero(infinite)[0])
        raise DataError(f"column {name!r} row {position + row_offset} is infinite; expected a finite number")
    return converted.astype("float64")


# -- reading ------------------------------------------------------------------------------------
def list_input_files(input_dir: Path) -> list[Path]:
    if not input_dir.exists():
        raise DataError(f"input directory {input_dir} does not exist")
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"no input files in {input_dir}; expected CSV or Parquet files")
    return files


def read_table(input_dir: Path, input_format: str = "auto", target_column: str = "label") -> pd.DataFrame:
    """Read every file under `input_dir` into one frame (same columns in each file)."""
    if input_format not in INPUT_FORMATS:
        raise DataError(f"input format {input_format!r} is not one of {', '.join(INPUT_FORMATS)}")
    frames = []
    for path in list_input_files(input_dir):
        fmt = input_format
        if fmt == "auto":
            fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
        try:
            if fmt == "parquet":
                frame = pd.read_parquet(path)
            elif fmt == "csv-label-first":
                frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=True)
                frame.columns = [target_column] + [f"f{i}" for i in range(1, frame.shape[1])]
            else:
                frame = pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path.name} is empty; expected a header line and data rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"{path.name} cannot be read as {fmt}: {first_line}") from None
        frame.attrs["source"] = path.name
        frames.append(frame)
    columns = list(frames[0].columns)
    for frame in frames[1:]:
        if list(frame.columns) != columns:
            raise DataError(f"{frame.attrs['source']} has columns {list(frame.columns)[:5]}..., unlike {frames[0].attrs['source']}")
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    table.attrs["source"] = frames[0].attrs["source"] if len(frames) == 1 else f"{len(frames)} files"
    if len(table) == 0:
        raise DataError(f"{table.attrs['source']} has no data rows; expected at least one row after the header")
    return table


# -- fitting ------------------------------------------------------------------------------------
def infer_problem_type(target: pd.Series, requested: str = "auto") -> str:
    if requested != "auto":
        if requested not in PROBLEM_TYPES:
            raise DataError(f"problem type {requested!r} is not one of auto, {', '.join(PROBLEM_TYPES)}")
        return requested
    numeric = pd.to_numeric(target, errors="coerce")
    if numeric.notna().all():
        integral = bool(np.all(np.mod(numeric.to_numpy(dtype=np.float64), 1) == 0))
        if not integral or numeric.nunique() > MAX_CLASSES_FOR_AUTO_CLASSIFICATION:
            return "regression"
    return "binary" if target.nunique() == 2 else "multiclass"


def classify_columns(frame: pd.DataFrame, feature_columns: Iterable[str], categorical: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Split feature columns into numeric and categorical; numeric columns holding garbage fail."""
    forced = set(categorical)
    numeric_columns, categorical_columns = [], []
    for name in feature_columns:
        column = frame[name]
        if name in forced:
            categorical_columns.append(name)
            continue
        present = column.dropna()
        parsed = pd.to_numeric(present, errors="coerce")
        share = float(parsed.notna().mean()) if len(present) else 1.0
        if share == 1.0:
            numeric_columns.append(name)
        elif share >= NUMERIC_GARBAGE_SHARE:
            _to_numeric_or_fail(column, name, row_offset=1, source=frame.attrs.get("source", ""))
        else:
            categorical_columns.append(name)
    return numeric_columns, categorical_columns


def fit_feature_spec(
    train: pd.DataFrame, target_column: str, problem_type: str, numeric_columns: list[str], categorical_columns: list[str], labels: list[str]
) -> FeatureSpec:
    feature_columns = [c for c in train.columns if c != target_column]
    numeric_impute: dict[str, float] = {}
    for name in numeric_columns:
        median = pd.to_numeric(train[name], errors="coerce").median()
        numeric_impute[name] = 0.0 if (median is None or math.isnan(median)) else float(median)
    vocabulary: dict[str, list[str]] = {}
    impute: dict[str, str] = {}
    for name in categorical_columns:
        keys = train[name].dropna().map(_category_key)
        vocabulary[name] = sorted(keys.unique().tolist())
        impute[name] = str(keys.mode().iloc[0]) if len(keys) else ""
    return FeatureSpec(
        target_column=target_column,
        problem_type=problem_type,
        feature_columns=feature_columns,
        numeric_impute=numeric_impute,
        categorical_vocabulary=vocabulary,
        categorical_impute=impute,
        labels=labels,
    )


@dataclass(frozen=True)
class PreprocessResult:
    spec: FeatureSpec
    row_counts: dict[str, int]


def stratified_split(frame: pd.DataFrame, stratify: pd.Series | None, validation_size: float, test_size: float, seed: int) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    if not (0 < validation_size < 1 and 0 < test_size < 1 and validation_size + test_size < 1):
        raise DataError(f"validation size {validation_size} and test size {test_size} must be in (0, 1) and sum below 1")
    holdout = validation_size + test_size
    if stratify is not None:
        # Each class must be able to land in every split: about 2 rows in the smallest holdout.
        needed = max(3, math.ceil(2 / min(validation_size, test_size)))
        counts = stratify.value_counts()
        rare = counts[counts < needed]
        if len(rare):
            raise DataError(
                f"class {rare.index[0]!r} has {int(rare.iloc[0])} row(s); a stratified split with validation {validation_size} "
                f"and test {test_size} needs at least {needed} rows per class"
            )
    try:
        train, rest = train_test_split(frame, test_size=holdout, random_state=seed, stratify=stratify)
        rest_stratify = stratify.loc[rest.index] if stratify is not None else None
        validation, test = train_test_split(rest, test_size=test_size / holdout, random_state=seed, stratify=rest_stratify)
    except ValueError as error:
        if stratify is not None:
            counts = stratify.value_counts()
            rare = counts[counts < 3]
            if len(rare):
                raise DataError(
                    f"class {rare.index[0]!r} has {int(rare.iloc[0])} row(s); a stratified train/validation/test split needs at least 3 per class"
                ) from None
        raise DataError(f"cannot split {len(frame)} rows into train/validation/test: {error}") from None
    return {"train": train, "validation": validation, "test": test}


def preprocess(
    input_dir: Path,
    output_dir: Path,
    target_column: str = "label",
    input_format: str = "auto",
    problem_type: str = "auto",
    categorical_columns: Sequence[str] = (),
    validation_size: float = 0.15,
    test_size: float = 0.15,
    seed: int = 42,
) -> PreprocessResult:
    table = read_table(Path(input_dir), input_format, target_column)
    source = table.attrs.get("source", "input")
    if target_column not in table.columns:
        raise DataError(f"target column {target_column!r} not found in {source}; columns are {list(table.columns)[:10]}")
    unknown_categorical = sorted(set(categorical_columns) - set(table.columns))
    if unknown_categorical:
        raise DataError(f"categorical column(s) {unknown_categorical} not found in {source}")
    missing_target = table[target_column].isna()
    if missing_target.all():
        raise DataError(f"target column {target_column!r} is empty in every row of {source}")
    if missing_target.any():
        print(f"dropping {int(missing_target.sum())} row(s) with no {target_column!r} value", flush=True)
        table = table.loc[~missing_target].reset_index(drop=True)
    if table.shape[1] < 2:
        raise DataError(f"{source} has only the target column; expected at least one feature column")

    kind = infer_problem_type(table[target_column], problem_type)
    target_keys = table[target_column].map(_category_key)
    if kind != "regression":
        classes = sorted(target_keys.unique().tolist(), key=_natural_key)
        if len(classes) < 2:
            raise DataError(f"target column {target_column!r} has only one class ({classes[0]!r}); classification needs at least two")
        if kind == "binary" and len(classes) != 2:
            raise DataError(f"problem type 'binary' needs exactly 2 classes; target column {target_column!r} has {len(classes)}")
    else:
        classes = []
        _to_numeric_or_fail(table[target_column], target_column, row_offset=1, source=source)

    features = [c for c in table.columns if c != target_column]
    numeric_columns, categorical = classify_columns(table, features, categorical_columns)
    for name in numeric_columns:  # fail on garbage before any split, naming the original line
        _to_numeric_or_fail(table[name], name, row_offset=1, source=source)

    splits = stratified_split(table, target_keys if kind != "regression" else None, validation_size, test_size, seed)
    spec = fit_feature_spec(splits["train"], target_column, kind, numeric_columns, categorical, classes)

    output_dir = Path(output_dir)
    counts = {}
    for split, frame in splits.items():
        matrix = spec.transform(frame)
        encoded = pd.DataFrame(matrix, columns=spec.encoded_columns)
        encoded.insert(0, ENCODED_TARGET_COLUMN, spec.encode_target(frame[target_column]))
        (output_dir / split).mkdir(parents=True, exist_ok=True)
        encoded.to_csv(output_dir / split / SPLIT_FILE_NAMES[split], index=False)
        counts[split] = len(frame)
    spec.save(output_dir / "spec")
    return PreprocessResult(spec=spec, row_counts=counts)


def _natural_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", type=Path, default=Path("/opt/ml/processing/input/data"))
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/output"))
    parser.add_argument("--target-column", default="label")
    parser.add_argument("--input-format", default="auto", choices=INPUT_FORMATS)
    parser.add_argument("--problem-type", default="auto", choices=("auto", *PROBLEM_TYPES))
    parser.add_argument("--categorical-columns", default="", help="comma-separated columns to treat as categorical")
    parser.add_argument("--validation-size", type=float, default=0.15)
    parser.add_argument("--test-size", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = preprocess(
            input_dir=args.input_dir,
            output_dir=args.output_dir,
            target_column=args.target_column,
            input_format=args.input_format,
            problem_type=args.problem_type,
            categorical_columns=[c for c in args.categorical_columns.split(",") if c],
            validation_size=args.validation_size,
            test_size=args.test_size,
            seed=args.seed,
        )
    except DataError as error:
        print(f"preprocess: error: {error}", file=sys.stderr, flush=True)
        return 2
    spec = result.spec
    print(
        f"preprocess: {spec.problem_type} on {spec.target_column!r}: {len(spec.feature_columns)} raw -> "
        f"{len(spec.encoded_columns)} encoded features; rows {result.row_counts}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
