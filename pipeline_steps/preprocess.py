"""Preprocess step: raw table -> stratified train/validation/test splits + a portable feature spec.

Runs unchanged in the SageMaker SKLearn processing container (1.4-2), under `sagelab run`, and is
imported by tests and by `inference.py`. Everything that a model needs to turn a *raw* row into a
feature vector is written to `feature_spec.json` (plain JSON, never pickle), fitted on the training
split only, so the endpoint accepts raw rows and every container applies exactly the same transform.

Container contract (paths are passed as arguments by the pipeline definition):
    --input-dir   /opt/ml/processing/input/data    CSV (header) / MNIST-style CSV / Parquet files
    --output-dir  /opt/ml/processing/output        train/ validation/ test/ (features.npy, target.npy) spec/

Split format: NumPy `.npy` arrays, because the two images that read them differ. The SKLearn 1.4-2
image (which runs this script) has pyarrow, the XGBoost 3.0-5 image (train.py, evaluate.py) does
not, so Parquet is out; both have numpy 2.1, whose `.npy` loads at memory speed with no parsing
(CSV of 70,000 x 784 floats took longer to write and read than to train on).

At MNIST scale (70,000 x 784) every step works on whole columns or whole matrices: CSV is read by
pyarrow when present (pandas' C parser otherwise), numeric columns are recognised by dtype, and
the splits are taken by row positions from one float32 matrix.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPEC_FORMAT_VERSION = 1
SPEC_FILE_NAME = "feature_spec.json"
SPLITS = ("train", "validation", "test")
# Each split directory holds the encoded feature matrix (float32, `encoded_columns` order) and the
# encoded target (int64 class positions in `labels`, or float64 for regression). evaluate.py reads
# them too and repeats these two names (it must stay a single file); a test keeps them equal.
SPLIT_FEATURES_FILE = "features.npy"
SPLIT_TARGET_FILE = "target.npy"
# Columns per slice when a statistic needs float64 (medians): bounded memory on wide tables.
COLUMN_CHUNK = 64
PROBLEM_TYPES = ("multiclass", "binary", "regression")
INPUT_FORMATS = ("auto", "csv", "csv-label-first", "parquet")
# An object column whose values are numbers this often is a numeric column with garbage in it,
# not a categorical column: failing loudly beats one-hot encoding "12", "13", "1x".
NUMERIC_GARBAGE_SHARE = 0.9
MAX_CLASSES_FOR_AUTO_CLASSIFICATION = 30
# The algorithm of the run (docs/decisions/0011) decides which extra CSV a built-in container needs.
ALGORITHMS = ("xgboost", "kmeans", "autopilot", "custom")
# spec/data_summary.json: the K-Means step reads FEATURE_DIM_KEY from it with a JsonGet.
DATA_SUMMARY_FILE_NAME = "data_summary.json"
COMPLETENESS_KEY = "train_completeness"  # evaluate.py reads it for the drift check's baseline
FEATURE_DIM_KEY = "feature_dim"
# The `tabular` output: <output-dir>/tabular/train/train.csv (kmeans, autopilot), tabular/test/test.csv (autopilot).
TABULAR_DIR = "tabular"
TABULAR_TRAIN_FILE = "train/train.csv"
TABULAR_TEST_FILE = "test/test.csv"


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
        return self.assemble(self._numeric_block(frame), frame)

    @property
    def numeric_columns(self) -> list[str]:
        return [name for name in self.feature_columns if name not in self.categorical_vocabulary]

    @functools.cached_property
    def numeric_fill(self) -> np.ndarray:
        """The imputation values of `numeric_columns`, as one float64 vector for NumPy."""
        return np.array([self.numeric_impute[name] for name in self.numeric_columns], dtype=np.float64)

    def impute(self, numeric: np.ndarray) -> np.ndarray:
        """Numeric block (rows x `numeric_columns`, NaN = missing) -> float32 with gaps filled.
        A float32 block is filled in place (the caller's fresh copy; no second matrix at MNIST size)."""
        filled = numeric.astype(np.float32, copy=False)
        rows, columns = np.nonzero(np.isnan(filled))
        if len(rows):
            filled[rows, columns] = self.numeric_fill[columns]  # rounded to float32 as a float64 block would be
        return filled

    def assemble(self, numeric: np.ndarray, frame: pd.DataFrame | None) -> np.ndarray:
        """Imputed numeric block + one-hot blocks of `frame`'s categorical columns, in `encoded_columns` order."""
        numeric = self.impute(numeric)
        if not self.categorical_vocabulary:
            return numeric  # all-numeric data (the digits, MNIST): the serving hot path
        assert frame is not None, "categorical columns need the raw frame"
        blocks: list[np.ndarray] = []
        numeric_position = 0
        for name in self.feature_columns:  # a loop over columns only where one-hot blocks interleave
            if name in self.categorical_vocabulary:
                blocks.append(self._one_hot(frame[name], name))
            else:
                blocks.append(numeric[:, numeric_position : numeric_position + 1])
                numeric_position += 1
        return np.hstack(blocks)

    def _one_hot(self, column: pd.Series, name: str) -> np.ndarray:
        vocabulary = self.categorical_vocabulary[name]
        keys = column.astype("object").where(column.notna(), self.categorical_impute[name]).map(_category_key)
        codes = pd.Categorical(keys, categories=vocabulary).codes  # -1: unseen category, encodes as all zeros
        block = np.zeros((len(column), len(vocabulary)), dtype=np.float32)
        seen = codes >= 0
        block[np.flatnonzero(seen), codes[seen]] = 1.0
        return block

    def _numeric_block(self, frame: pd.DataFrame) -> np.ndarray:
        names = self.numeric_columns
        if not names:
            return np.zeros((len(frame), 0), dtype=np.float64)
        block = frame[names]
        if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in block.dtypes):
            block = pd.DataFrame({name: _to_numeric_or_fail(block[name], name, row_offset=0) for name in names})
        return block.to_numpy(dtype=np.float64, na_value=np.nan)

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


def read_table(input_dir: Path, input_format: str = "auto", target_column: str = "label", text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read every file under `input_dir` into one frame (same columns in each file).

    Numbers arrive as numeric columns; the target and `text_columns` (forced categoricals) as text,
    so "1.0" stays the category "1.0" and labels keep their spelling."""
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
                frame = _read_csv(path, header=False, text_columns=[0])
                frame.columns = [target_column] + [f"f{i}" for i in range(1, frame.shape[1])]
            else:
                frame = _read_csv(path, header=True, text_columns=[target_column, *text_columns])
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


def _read_csv(path: Path, header: bool, text_columns: Sequence[str | int]) -> pd.DataFrame:
    """One CSV with inferred numeric columns: pyarrow's reader where the image has it (the SKLearn
    image does; multi-threaded, ~25x pandas' C parser on wide files), pandas' C parser otherwise."""
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return _read_csv_with_pandas(path, header, text_columns, engine="c")
    return _read_csv_with_arrow(path, header, text_columns)


def _read_csv_with_pandas(path: Path, header: bool, text_columns: Sequence[str | int], engine: str) -> pd.DataFrame:
    """Columns the parser did not type as int, float or text (booleans, dates) are read again as
    text: the feature spec decides what they are."""
    names = _csv_header(path) if header else None
    wanted = {column: str for column in text_columns if names is None or column in names}
    frame = pd.read_csv(path, header=0 if header else None, dtype=wanted or None, keep_default_na=True, engine=engine)
    if header:  # pyarrow has no skipinitialspace: names and text cells lose their leading spaces with every reader
        frame.columns = [str(name).lstrip(" ") for name in frame.columns]
    numeric = frame.dtypes.map(_numeric_dtype).to_numpy(dtype=bool)
    others = frame.columns[~numeric]
    odd = [name for name in others if pd.api.types.infer_dtype(frame[name], skipna=True) not in ("string", "empty")]
    if odd:  # rare (booleans, dates): one more read, all text
        again = pd.read_csv(path, header=0 if header else None, dtype=str, keep_default_na=True, engine=engine)
        again.columns = frame.columns
        for name in odd:
            frame[name] = again[name]
    for name in others:
        frame[name] = frame[name].str.lstrip(" ")
    return frame


# pyarrow parses an integer column straight into the narrowest type that its first block (the
# reader's own type-inference sample) fits with this much headroom: MNIST's 0..255 pixels become
# int16, a quarter of int64's memory. A later value that does not fit fails the typed read and the
# file is read again with pyarrow's own inference, so a wrong guess costs time, never a value.
NARROW_INTEGER_TYPES = ((2**12, "int16"), (2**28, "int32"))
# Integers of at most this magnitude are exact in float32 (24-bit significand).
FLOAT32_EXACT_INTEGER = 2**24


def _read_csv_with_arrow(path: Path, header: bool, text_columns: Sequence[str | int]) -> pd.DataFrame:
    """pyarrow's reader with the options pandas' pyarrow engine gives it (pandas' missing-value
    words, quoting, blank lines skipped), converted a column at a time so the Arrow table and a full
    pandas copy of it never coexist: integer columns exact in float32 become one float32 block
    (MNIST: 220 MB, where pandas held 440 MB of int64 beside the Arrow table), floats stay float64,
    text stays text (missing cells missing). Columns typed as neither number nor text (booleans,
    dates) are read again as text: the feature spec decides what they are. A header with empty or
    repeated names goes to pandas' reader, which names them as it always did (`Unnamed: 2`, `x.1`)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read_options = pacsv.ReadOptions(autogenerate_column_names=not header)
    parse_options = pacsv.ParseOptions(delimiter=",", quote_char='"', ignore_empty_lines=True)
    try:
        reader = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options, convert_options=_arrow_convert_options({}))
    except pa.ArrowInvalid as error:
        if str(error).startswith("Empty CSV file"):
            raise pd.errors.EmptyDataError(str(error)) from None
        raise
    with reader:
        raw_names = list(reader.schema.names)
        first_block = next(iter(reader), None)
    names = [name.lstrip(" ") for name in raw_names]
    if header and (len(set(names)) != len(names) or "" in names):
        return _read_csv_with_pandas(path, header, text_columns, engine="pyarrow")
    wanted = {str(name) if header else f"f{name}" for name in text_columns}
    text = {raw: pa.large_string() for raw, name in zip(raw_names, names, strict=True) if (name if header else raw) in wanted}
    guesses = _narrow_integer_guesses(first_block, exclude=set(text)) if first_block is not None else {}
    try:
        table = pacsv.read_csv(path, read_options=read_options, parse_options=parse_options, convert_options=_arrow_convert_options({**text, **guesses}))
    except pa.ArrowInvalid:
        if not guesses:
            raise
        table = pacsv.read_csv(path, read_options=read_options, parse_options=parse_options, convert_options=_arrow_convert_options(text))
    return _arrow_table_to_frame(table, names, lambda odd: _read_as_text(path, read_options, parse_options, odd))


def _arrow_convert_options(column_types: dict[str, Any]) -> Any:
    import pyarrow.csv as pacsv
    from pandas._libs.parsers import STR_NA_VALUES  # the words every pandas reader takes as missing

    return pacsv.ConvertOptions(null_values=sorted(STR_NA_VALUES), strings_can_be_null=True, column_types=column_types)


def _narrow_integer_guesses(block: Any, exclude: set[str]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    guesses: dict[str, Any] = {}
    for name, column in zip(block.schema.names, block.columns, strict=True):
        if name in exclude or not pa.types.is_integer(column.type):
            continue
        extremes = pc.min_max(column)
        magnitude = max(abs(extremes["min"].as_py() or 0), abs(extremes["max"].as_py() or 0))
        for limit, type_name in NARROW_INTEGER_TYPES:
            if magnitude <= limit:
                guesses[name] = getattr(pa, type_name)()
                break
    return guesses


def _read_as_text(path: Path, read_options: Any, parse_options: Any, raw_names: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = _arrow_convert_options({name: pa.large_string() for name in raw_names})
    options.include_columns = raw_names
    return pacsv.read_csv(path, read_options=read_options, parse_options=parse_options, convert_options=options)


def _arrow_table_to_frame(table: Any, names: list[str], read_as_text: Callable[[list[str]], Any]) -> pd.DataFrame:
    """Arrow columns -> pandas columns called `names`, each Arrow column released once converted.
    Consecutive columns of one dtype share one 2-D block, so MNIST's pixels are one float32 matrix."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = table.num_rows
    raw_names = table.column_names
    columns: list[Any] = list(table.columns)
    del table  # from here each Arrow column lives only in `columns`, until it is converted
    odd = [raw for raw, column in zip(raw_names, columns, strict=True) if not _arrow_type_is_plain(column.type)]
    if odd:
        again = read_as_text(odd)
        for raw in odd:
            columns[raw_names.index(raw)] = again.column(raw)
        del again
    dtypes = []
    for column in columns:
        if pa.types.is_integer(column.type) and column.null_count < len(column):
            extremes = pc.min_max(column)
            exact = max(abs(extremes["min"].as_py()), abs(extremes["max"].as_py())) <= FLOAT32_EXACT_INTEGER
            dtypes.append("float32" if exact else ("int64" if column.null_count == 0 else "float64"))  # as pandas: int64, float64 with gaps
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
            dtypes.append("float64")  # an all-missing column is NaN, which the feature spec treats as an empty numeric column
        else:
            dtypes.append("text")
    pieces = []
    start = 0
    while start < len(columns):
        stop = start
        while stop < len(columns) and dtypes[stop] == dtypes[start]:
            stop += 1
        pieces.append(_arrow_columns_to_frame(columns, range(start, stop), dtypes[start], names[start:stop], rows))
        start = stop
    if len(pieces) == 1:
        return pieces[0]
    return pd.concat(pieces, axis=1, **_CONCAT_WITHOUT_COPY)


# pandas before 3 copies every block in `concat(axis=1)` unless told not to; pandas 3 never copies
# there and deprecates the keyword.
_CONCAT_WITHOUT_COPY: dict[str, Any] = {"copy": False} if int(pd.__version__.split(".")[0]) < 3 else {}


def _arrow_type_is_plain(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_null(arrow_type)
        or pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
    )


def _arrow_columns_to_frame(columns: list[Any], positions: range, dtype: str, names: list[str], rows: int) -> pd.DataFrame:
    if dtype == "text":
        piece = pd.DataFrame({name: columns[i].to_pandas().str.lstrip(" ") for i, name in zip(positions, names, strict=True)})
        for i in positions:
            columns[i] = None
        return piece
    block = np.empty((len(positions), rows), dtype=dtype)  # one row per column: each Arrow column lands contiguously
    for offset, i in enumerate(positions):
        column = columns[i]
        if _arrow_is_null(column):
            block[offset] = np.nan
        else:
            block[offset] = column.to_numpy()  # integers with gaps arrive as float64 NaN, cast exactly (|v| <= 2**24)
        columns[i] = None
    return pd.DataFrame(block.T, columns=names, copy=False)


def _arrow_is_null(column: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_null(column.type))


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        first = handle.readline()
    return [name.strip(" \r\n").strip('"') for name in first.split(",")]


def _numeric_dtype(dtype: Any) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


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
    feature_columns = list(feature_columns)
    typed = {name for name, dtype in frame[feature_columns].dtypes.items() if _numeric_dtype(dtype)} - forced
    numeric_columns, categorical_columns = [], []
    for name in feature_columns:
        if name in typed:  # parsed as numbers: nothing to check per value (784 MNIST pixels land here)
            numeric_columns.append(name)
            continue
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
    table: pd.DataFrame,
    target_column: str,
    problem_type: str,
    numeric_columns: list[str],
    categorical_columns: list[str],
    labels: list[str],
    rows: np.ndarray | None = None,
) -> FeatureSpec:
    """Fit on the training rows (`rows` of `table`, default all) only. `numeric_columns` must
    already hold numbers (see `numeric_frame`)."""
    feature_columns = [c for c in table.columns if c != target_column]
    numeric_impute = dict(zip(numeric_columns, column_medians(table, numeric_columns, rows), strict=True))
    train = table if rows is None else table[categorical_columns].iloc[rows]
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


def column_medians(frame: pd.DataFrame, columns: list[str], rows: np.ndarray | None = None) -> list[float]:
    """Median of each column over `rows` ignoring gaps (0.0 for an empty one), equal to NumPy's
    median of the float64 values, a slice of `COLUMN_CHUNK` columns at a time so a wide table never
    needs a second float64 copy. Integer-valued columns (MNIST's pixels) are counted rather than
    partitioned (`counted_medians`); the others go through NumPy's partition as before."""
    medians: list[float] = []
    for start in range(0, len(columns), COLUMN_CHUNK):
        block = _numeric_values(frame, columns[start : start + COLUMN_CHUNK])
        if rows is not None:  # a float32 frame hands its columns over column-major: gather the rows in that order
            block = block[rows] if block.flags.c_contiguous else block.T[:, rows].T
        values = np.full(block.shape[1], np.nan)
        if len(block):
            counted, values = counted_medians(block)
            if not counted.all():
                values[~counted] = _partition_medians(block[:, ~counted].astype(np.float64, copy=False))
        medians.extend(0.0 if math.isnan(value) else float(value) for value in values)
    return medians


# Counting costs one bin per integer between a column's smallest and largest value: beyond this
# span NumPy's partition is cheaper than the bins.
COUNTED_SPAN_LIMIT = 2**16


def _numeric_values(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The columns as one NumPy matrix in their own dtype where they share a plain one (float32 or
    int64: no float64 copy), float64 with NaN for gaps otherwise."""
    dtypes = set(frame.dtypes[names])
    if len(dtypes) == 1 and isinstance(next(iter(dtypes)), np.dtype) and next(iter(dtypes)).kind in "iuf":
        return frame[names].to_numpy()
    return frame[names].to_numpy(dtype=np.float64, na_value=np.nan)


def counted_medians(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which columns were counted, their medians) for a rows x columns block, NaN = missing.

    A column whose present values are whole numbers spanning at most `COUNTED_SPAN_LIMIT` is counted
    instead of partitioned: its values become bin numbers, one `bincount` counts every such column at
    once, and the middle rank(s) are read off the cumulative counts. The result is the float64 that
    `np.median` gives for the present values (the mean of the two middle values for an even count),
    NaN for a column with none. Other columns are left NaN and marked not counted."""
    width = block.shape[1]
    if block.dtype.kind == "f":
        missing = np.isnan(block)
        gaps = bool(missing.any())
        filled = np.where(missing, 0, block) if gaps else block
        whole = (filled == np.floor(filled)).all(axis=0)
        low = np.where(missing, np.inf, block).min(axis=0) if gaps else block.min(axis=0)
        high = np.where(missing, -np.inf, block).max(axis=0) if gaps else block.max(axis=0)
    else:
        missing, gaps, filled = None, False, block
        whole = np.ones(width, dtype=bool)
        low, high = block.min(axis=0), block.max(axis=0)
    with np.errstate(invalid="ignore"):
        span = high.astype(np.float64) - low.astype(np.float64)  # an infinity spans infinitely; an empty column spans -inf
        counted = whole & (span <= COUNTED_SPAN_LIMIT)
    medians = np.full(width, np.nan)
    if not counted.any():
        return counted, medians
    chosen = slice(None) if counted.all() else np.flatnonzero(counted)
    low = np.where(np.isfinite(low[chosen]), low[chosen], 0) if block.dtype.kind == "f" else low[chosen]
    codes = (filled[:, chosen] - low).astype(np.int64)  # exact: whole numbers, at most COUNTED_SPAN_LIMIT apart
    bins = int(max(span[chosen].max(), 0)) + 2  # the last bin of each column takes its missing cells
    if gaps:
        assert missing is not None
        codes[missing[:, chosen]] = bins - 1
    codes += np.arange(codes.shape[1], dtype=np.int64) * bins
    counts = np.bincount(codes.ravel(order="K"), minlength=codes.shape[1] * bins).reshape(codes.shape[1], bins)[:, :-1]
    cumulative = np.cumsum(counts, axis=1)
    present = cumulative[:, -1]
    lower_bin = (cumulative <= (np.maximum(present - 1, 0) // 2)[:, None]).sum(axis=1)  # 0-based middle rank(s)
    upper_bin = np.minimum((cumulative <= (present // 2)[:, None]).sum(axis=1), bins - 2)
    lower = (low + lower_bin).astype(np.float64)
    upper = (low + upper_bin).astype(np.float64)
    medians[chosen] = np.where(present == 0, np.nan, np.where(present % 2 == 1, lower, (lower + upper) / 2))
    return counted, medians


def _partition_medians(block: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-empty column: NaN, imputed as 0.0 by the caller
        return np.nanmedian(block, axis=0) if np.isnan(block).any() else np.median(block, axis=0)


def numeric_frame(table: pd.DataFrame, numeric_columns: list[str], source: str) -> pd.DataFrame:
    """`table` with every numeric column as numbers. Columns the reader typed already are checked
    for infinities as one matrix; text columns that hold numbers are converted (or fail naming the line)."""
    dtypes = table.dtypes
    typed = [name for name in numeric_columns if _numeric_dtype(dtypes[name])]
    floats = [name for name in typed if pd.api.types.is_float_dtype(dtypes[name])]  # integers cannot be infinite
    if floats:
        for start in range(0, len(floats), COLUMN_CHUNK):
            names = floats[start : start + COLUMN_CHUNK]
            infinite = np.isinf(_numeric_values(table, names))  # float32 stays float32: no float64 copy of MNIST
            if infinite.any():  # the first column's first bad row, as a column-by-column check names it
                column, row = (int(v[0]) for v in np.nonzero(infinite.T))
                raise DataError(f"column {names[column]!r} row {row + 1} is infinite; expected a finite number")
    already = set(typed)
    converted = {name: _to_numeric_or_fail(table[name], name, row_offset=1, source=source) for name in numeric_columns if name not in already}
    return table.assign(**converted) if converted else table


@dataclass(frozen=True)
class PreprocessResult:
    spec: FeatureSpec
    row_counts: dict[str, int]


def stratified_split(frame: pd.DataFrame, stratify: pd.Series | None, validation_size: float, test_size: float, seed: int) -> dict[str, pd.DataFrame]:
    positions = split_positions(len(frame), stratify, validation_size, test_size, seed)
    return {name: frame.iloc[rows] for name, rows in positions.items()}


def split_positions(rows: int, stratify: pd.Series | None, validation_size: float, test_size: float, seed: int) -> dict[str, np.ndarray]:
    """Row positions of train/validation/test. Splitting positions draws exactly what splitting the
    frame did (scikit-learn shuffles indices either way) without copying 785-column frames twice."""
    from sklearn.model_selection import train_test_split

    frame = np.arange(rows)
    if stratify is not None:
        stratify = stratify.reset_index(drop=True)

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
        rest_stratify = stratify.iloc[rest] if stratify is not None else None
        validation, test = train_test_split(rest, test_size=test_size / holdout, random_state=seed, stratify=rest_stratify)
    except ValueError as error:
        if stratify is not None:
            counts = stratify.value_counts()
            rare = counts[counts < 3]
            if len(rare):
                raise DataError(
                    f"class {rare.index[0]!r} has {int(rare.iloc[0])} row(s); a stratified train/validation/test split needs at least 3 per class"
                ) from None
        raise DataError(f"cannot split {rows} rows into train/validation/test: {error}") from None
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
    algorithm: str = "xgboost",
) -> PreprocessResult:
    table = read_table(Path(input_dir), input_format, target_column, text_columns=categorical_columns)
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

    inferred_type = infer_problem_type(table[target_column], problem_type)
    target_keys = table[target_column].map(_category_key)
    if inferred_type != "regression":
        classes = sorted(target_keys.unique().tolist(), key=_natural_key)
        if len(classes) < 2:
            raise DataError(f"target column {target_column!r} has only one class ({classes[0]!r}); classification needs at least two")
        if inferred_type == "binary" and len(classes) != 2:
            raise DataError(f"problem type 'binary' needs exactly 2 classes; target column {target_column!r} has {len(classes)}")
    else:
        classes = []
        _to_numeric_or_fail(table[target_column], target_column, row_offset=1, source=source)

    features = [c for c in table.columns if c != target_column]
    numeric_columns, categorical = classify_columns(table, features, categorical_columns)
    table = numeric_frame(table, numeric_columns, source)  # fails on garbage before any split, naming the line

    positions = split_positions(len(table), target_keys if inferred_type != "regression" else None, validation_size, test_size, seed)
    spec = fit_feature_spec(table, target_column, inferred_type, numeric_columns, categorical, classes, rows=positions["train"])
    target = spec.encode_target(table[target_column])
    # One float32 matrix of the numeric columns (NaN = gap); each split is a row selection of it.
    numeric = table[spec.numeric_columns].to_numpy(dtype=np.float32, na_value=np.nan)
    output_dir = Path(output_dir)
    counts = {}
    for split, rows in positions.items():
        frame = table.iloc[rows] if spec.categorical_vocabulary else None
        write_split(output_dir / split, spec.assemble(numeric[rows], frame), target[rows])
        counts[split] = len(rows)
    spec.save(output_dir / "spec")
    write_data_summary(output_dir / "spec", spec, counts, train_completeness(table, spec, numeric, positions["train"]))
    write_tabular(output_dir / TABULAR_DIR, algorithm, table, spec, positions, numeric)
    return PreprocessResult(spec=spec, row_counts=counts)


def write_tabular(
    tabular_dir: Path, algorithm: str, table: pd.DataFrame, spec: FeatureSpec, positions: dict[str, np.ndarray], numeric: np.ndarray
) -> list[Path]:
    """The CSV the run's built-in container reads (nothing for xgboost and custom, which read the .npy splits)."""
    if algorithm not in ALGORITHMS:
        raise DataError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if algorithm == "kmeans":
        check_kmeans_features(spec)
        return [write_kmeans_train_csv(tabular_dir, spec, spec.assemble(numeric[positions["train"]], None))]
    if algorithm == "autopilot":
        return list(write_autopilot_csvs(tabular_dir, table, spec, positions))
    return []


def train_completeness(table: pd.DataFrame, spec: FeatureSpec, numeric: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """Per feature column, the share of training rows that had a value: the splits are imputed, so
    the drift check's completeness baseline (evaluate.py) can only come from here."""
    present = dict(zip(spec.numeric_columns, (1.0 - np.isnan(numeric[rows]).mean(axis=0)).tolist(), strict=True)) if len(rows) else {}
    for name in spec.categorical_vocabulary:
        present[name] = float(1.0 - table[name].iloc[rows].isna().mean()) if len(rows) else 1.0
    return {name: round(float(present.get(name, 1.0)), 6) for name in spec.feature_columns}


def write_data_summary(spec_dir: Path, spec: FeatureSpec, counts: dict[str, int], completeness: dict[str, float] | None = None) -> Path:
    """What later steps read without loading the splits: the encoded width (K-Means' feature_dim),
    and each feature's completeness on the training split (the drift check's baseline)."""
    path = spec_dir / DATA_SUMMARY_FILE_NAME
    summary = {FEATURE_DIM_KEY: len(spec.encoded_columns), "problem_type": spec.problem_type, "rows": counts, COMPLETENESS_KEY: completeness or {}}
    path.write_text(json.dumps(summary, indent=2))
    return path


def write_kmeans_train_csv(tabular_dir: Path, spec: FeatureSpec, train_features: np.ndarray) -> Path:
    """The built-in K-Means reads numbers only: the encoded train features, no header, no target."""
    path = tabular_dir / TABULAR_TRAIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_numeric_csv(train_features, path)
    return path


def check_kmeans_features(spec: FeatureSpec) -> None:
    if spec.categorical_vocabulary:
        names = sorted(spec.categorical_vocabulary)
        raise DataError(
            f"K-Means needs numeric features; column(s) {names} are categorical. Drop or encode them as numbers in the data, or choose another algorithm"
        )


def write_autopilot_csvs(tabular_dir: Path, table: pd.DataFrame, spec: FeatureSpec, positions: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Autopilot reads raw columns: train + validation rows with a header and the target (it does its
    own validation split), and the test rows' features alone, no header, in target.npy's order (the
    batch transform's output lines are matched to target.npy by position)."""
    train_path, test_path = tabular_dir / TABULAR_TRAIN_FILE, tabular_dir / TABULAR_TEST_FILE
    train_path.parent.mkdir(parents=True, exist_ok=True)
    test_path.parent.mkdir(parents=True, exist_ok=True)
    # pandas quotes a cell only when it must (pyarrow quotes every string): the plainest CSV for Autopilot.
    table.iloc[np.concatenate([positions["train"], positions["validation"]])].to_csv(train_path, index=False)
    table[spec.feature_columns].iloc[positions["test"]].to_csv(test_path, header=False, index=False)
    return train_path, test_path


def _write_numeric_csv(matrix: np.ndarray, path: Path) -> None:
    """A float matrix as CSV, no header: pyarrow's multi-threaded writer where the image has it (the
    SKLearn image: MNIST's 49,000 x 784 in 2 s, against 15 s for pandas), pandas otherwise. Both
    write the shortest text that reads back to the same float32."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        pd.DataFrame(matrix).to_csv(path, header=False, index=False)
        return
    columns = [pa.array(matrix[:, position]) for position in range(matrix.shape[1])]
    pa_csv.write_csv(
        pa.table(columns, names=[str(position) for position in range(matrix.shape[1])]), path, write_options=pa_csv.WriteOptions(include_header=False)
    )


def write_split(directory: Path, features: np.ndarray, target: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / SPLIT_FEATURES_FILE, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
    np.save(directory / SPLIT_TARGET_FILE, target, allow_pickle=False)


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(features float32, target) of one split directory, as written by `write_split`."""
    directory = Path(directory)
    paths = [directory / SPLIT_FEATURES_FILE, directory / SPLIT_TARGET_FILE]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{split} data not found at {path}")
    features, target = (np.load(path, allow_pickle=False) for path in paths)
    if len(features) != len(target):
        raise ValueError(f"{split} split at {directory} has {len(features)} feature rows but {len(target)} targets")
    return features, target


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
    parser.add_argument("--algorithm", default="xgboost", choices=ALGORITHMS, help="writes the tabular/ CSV this algorithm's container reads")
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
            algorithm=args.algorithm,
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
