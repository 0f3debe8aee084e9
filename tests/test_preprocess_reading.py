"""preprocess.py's reading and statistics helpers: medians by counting equal NumPy's median, and
the pyarrow reader (narrow integer guesses, column types) reads what pyarrow's own inference reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline_steps import preprocess


def reference_medians(block: np.ndarray, rows: np.ndarray | None) -> list[float]:
    """What the feature spec imputes: NumPy's median of each column's present float64 values, 0.0 for none."""
    values = block.astype(np.float64)
    if rows is not None:
        values = values[rows]
    medians = []
    for column in values.T:
        present = column[~np.isnan(column)]
        medians.append(float(np.median(present)) if len(present) else 0.0)
    return medians


@st.composite
def numeric_blocks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray | None]:
    """Columns of one dtype as a reader produces them: small or wide integers (int64, or float32/float64
    holding whole numbers, NaN for gaps), arbitrary floats; odd and even row counts; sometimes a subset of rows."""
    rows = draw(st.integers(1, 40))
    width = draw(st.integers(1, 6))
    column_type = draw(st.sampled_from(["int64", "whole-float32", "whole-float64", "float64", "wide-int64"]))
    if column_type in ("int64", "wide-int64"):
        bound = 2**40 if column_type == "wide-int64" else 300
        block = draw(hnp.arrays(np.int64, (rows, width), elements=st.integers(-bound, bound)))
    elif column_type == "float64":
        block = draw(hnp.arrays(np.float64, (rows, width), elements=st.floats(-1e6, 1e6) | st.just(np.nan)))
    else:
        dtype = np.float32 if column_type == "whole-float32" else np.float64
        whole = draw(hnp.arrays(np.int64, (rows, width), elements=st.integers(-70_000, 70_000))).astype(dtype)
        gaps = draw(hnp.arrays(np.bool_, (rows, width)))
        block = np.where(gaps, np.nan, whole).astype(dtype)
    subset = draw(st.none() | st.lists(st.integers(0, rows - 1), min_size=0, max_size=rows, unique=True))
    return block, (np.array(sorted(subset), dtype=np.int64) if subset is not None else None)


@settings(max_examples=300, deadline=None)
@given(numeric_blocks())
def test_column_medians_equal_numpy_median(case: tuple[np.ndarray, np.ndarray | None]) -> None:
    block, rows = case
    names = [f"c{i}" for i in range(block.shape[1])]
    frame = pd.DataFrame(block, columns=names)
    assert preprocess.column_medians(frame, names, rows) == reference_medians(block, rows)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4)), elements=st.integers(-2000, 2000).map(float) | st.just(np.nan)))
def test_counted_medians_equal_numpy_nanmedian(block: np.ndarray) -> None:
    """The counting path itself, gaps included: NaN where a column has no value, as np.nanmedian."""
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if np.isnan(block).all(axis=0).any() else _nothing():
        expected = np.nanmedian(block, axis=0)
    counted, medians = preprocess.counted_medians(block)
    assert counted.all()
    np.testing.assert_array_equal(medians, expected)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_mnist_pixels_are_counted_not_partitioned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integer columns never reach NumPy's partition (the 0.7 s of 784 partitions at MNIST size)."""
    pixels = np.random.default_rng(0).integers(0, 256, (501, 70)).astype(np.float32)
    frame = pd.DataFrame(pixels, columns=[f"f{i}" for i in range(70)])

    def refuse(block: np.ndarray) -> np.ndarray:
        raise AssertionError(f"{block.shape[1]} integer column(s) were partitioned")

    monkeypatch.setattr(preprocess, "_partition_medians", refuse)
    assert preprocess.column_medians(frame, list(frame.columns)) == reference_medians(pixels, None)


# -- the pyarrow reader --------------------------------------------------------------------------------
def default_arrow_frame(path: Path, text: list[str]) -> pd.DataFrame:
    """pyarrow's own inference over the whole file, as pandas shows it (the reference the typed read must equal)."""
    pacsv = pytest.importorskip("pyarrow.csv")
    import pyarrow as pa

    options = preprocess._arrow_convert_options({name: pa.large_string() for name in text})
    return pacsv.read_csv(path, convert_options=options).to_pandas()


@pytest.mark.parametrize(
    ("tail", "expected_dtype"),
    [("70000", "float32"), ("2147483647000", "int64"), ("1.5", "float64"), ("", "float32"), ("x1", "text")],
    ids=["beyond-the-int16-guess", "beyond-float32-exact", "a-float-later", "a-gap-later", "text-later"],
)
def test_a_later_value_outside_the_first_blocks_guess_reads_as_pyarrow_infers(tmp_path: Path, tail: str, expected_dtype: str) -> None:
    pytest.importorskip("pyarrow")
    lines = ["a,b,label"] + [f"{i % 100},{i % 7},{i % 2}" for i in range(300_000)] + [f"{tail},3,1"]  # several MB: past the first block
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = preprocess._read_csv(path, header=True, text_columns=["label"])
    reference = default_arrow_frame(path, ["label"])
    assert list(frame.columns) == ["a", "b", "label"]
    if expected_dtype == "text":
        assert not pd.api.types.is_numeric_dtype(frame["a"].dtype)
        assert frame["a"].tolist() == [str(v) for v in reference["a"].tolist()]
    else:
        assert frame["a"].dtype == expected_dtype
        np.testing.assert_array_equal(frame["a"].to_numpy(dtype=np.float64), reference["a"].to_numpy(dtype=np.float64, na_value=np.nan))
    assert frame["b"].dtype == np.float32 and frame["label"].tolist() == reference["label"].tolist()


def test_text_booleans_dates_gaps_and_padded_names(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("id, colour,flag,day,empty,score,label\n1, red,true,2024-01-02,,1.5,y\n2,NA,false,2024-01-03,,,n\n3,  blue,true,2024-01-04,,2.5,y\n")
    frame = preprocess._read_csv(path, header=True, text_columns=["label", "id"])
    assert list(frame.columns) == ["id", "colour", "flag", "day", "empty", "score", "label"]
    assert frame["id"].tolist() == ["1", "2", "3"]  # forced text keeps its spelling
    assert frame["colour"].iloc[0] == "red" and pd.isna(frame["colour"].iloc[1]) and frame["colour"].iloc[2] == "blue"
    assert frame["flag"].tolist() == ["true", "false", "true"] and frame["day"].tolist() == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert frame["empty"].isna().all() and pd.api.types.is_float_dtype(frame["empty"].dtype)
    np.testing.assert_array_equal(frame["score"].to_numpy(), [1.5, np.nan, 2.5])


def test_a_forced_categorical_with_gaps_keeps_them_missing(tmp_path: Path) -> None:
    """pandas 2's pyarrow engine turned a missing cell of a dtype=str column into the text 'None'."""
    (tmp_path / "in").mkdir()
    rows = "".join(f"{i},{'' if i % 5 == 0 else ['10', '20'][i % 2]},{['a', 'b'][i % 2]}\n" for i in range(40))
    (tmp_path / "in" / "data.csv").write_text("size,code,label\n" + rows)
    spec = preprocess.preprocess(tmp_path / "in", tmp_path / "out", categorical_columns=["code"]).spec
    assert spec.categorical_vocabulary == {"code": ["10", "20"]}


def test_an_integer_column_with_gaps_is_imputed_with_its_median(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    rows = "".join(f"{'' if i % 4 == 0 else i},{i % 2}\n" for i in range(60))
    (tmp_path / "in" / "data.csv").write_text("count,label\n" + rows)
    result = preprocess.preprocess(tmp_path / "in", tmp_path / "out")
    values = np.array([np.nan if i % 4 == 0 else i for i in range(60)])
    train = preprocess.split_positions(60, pd.Series([str(i % 2) for i in range(60)]), 0.15, 0.15, 42)["train"]
    assert result.spec.numeric_impute["count"] == float(np.nanmedian(values[train]))
    features, _ = preprocess.load_split(tmp_path / "out" / "train", "train")
    gaps = np.isnan(values[train])
    assert gaps.any() and (features[gaps, 0] == np.float32(result.spec.numeric_impute["count"])).all()
    np.testing.assert_array_equal(features[~gaps, 0], values[train][~gaps].astype(np.float32))


def test_repeated_header_names_are_named_by_pandas_reader_as_before(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("x,x,,label\n1,2,3,a\n4,5,6,b\n")
    frame = preprocess._read_csv(path, header=True, text_columns=["label"])
    assert list(frame.columns) == list(pd.read_csv(path, engine="pyarrow").columns)  # pandas 3: x, x.1, Unnamed: 2, label
