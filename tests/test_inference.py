"""inference.py: the serving container's handlers, on a model trained from the digits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipeline_steps import inference, preprocess, train
from sagelab.datasets import DIGITS_CSV


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> inference.LoadedModel:
    root = tmp_path_factory.mktemp("serve")
    (root / "in").mkdir()
    (root / "in" / "digits.csv").write_bytes(DIGITS_CSV.read_bytes())
    preprocess.preprocess(root / "in", root / "splits")
    train.train(root / "splits/train", root / "splits/validation", root / "splits/spec", root / "model", train.Hyperparameters(num_round=60))
    return inference.model_fn(root / "model")


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    return pd.read_csv(DIGITS_CSV)


def test_rows_records_and_csv_agree(model: inference.LoadedModel, digits: pd.DataFrame) -> None:
    sample = digits.drop(columns="label").head(20)
    rows = sample.to_numpy().tolist()
    by_rows = inference.predict_rows(model, json.dumps({"instances": rows}))
    by_records = inference.predict_rows(model, json.dumps({"instances": sample.to_dict(orient="records")}))
    by_csv = inference.predict_rows(model, "\n".join(",".join(str(v) for v in row) for row in rows), "text/csv")
    assert by_rows == by_records == by_csv
    labels = [p["label"] for p in by_rows]
    assert sum(label == str(truth) for label, truth in zip(labels, digits["label"].head(20), strict=False)) >= 18
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-3 for p in by_rows)


def test_container_call_sequence(model: inference.LoadedModel, digits: pd.DataFrame) -> None:
    body = json.dumps({"instances": digits.drop(columns="label").head(2).to_numpy().tolist()})
    payload = inference.input_fn(body.encode(), "application/json; charset=utf-8")
    text, content_type = inference.output_fn(inference.predict_fn(payload, model), "application/json")
    assert content_type == "application/json"
    assert len(json.loads(text)["predictions"]) == 2
    csv_text, csv_type = inference.output_fn(inference.predict_fn(payload, model), "text/csv")
    assert csv_type == "text/csv" and len(csv_text.splitlines()) == 2


def test_missing_values_are_imputed(model: inference.LoadedModel) -> None:
    row = [None] * 64
    (answer,) = inference.predict_rows(model, json.dumps({"instances": [row]}))
    assert answer["label"] in model.spec.labels


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("{not json", "application/json", "body is not valid JSON"),
        ("[1, 2]", "application/json", 'body must be a JSON object with an "instances" array'),
        ('{"instances": []}', "application/json", '"instances" must be a non-empty array'),
        ('{"instances": [[1, 2]]}', "application/json", "instances[0] has 2 values; expected 64"),
        (
            '{"instances": [[' + ",".join(["1"] * 63) + ', "x"]]}',
            "application/json",
            "instances[0] column 'pixel_63' is the string 'x'; expected a number or null",
        ),
        ('{"instances": [[' + ",".join(["1"] * 63) + ", NaN]]}", "application/json", "body contains NaN; JSON numbers must be finite"),
        ('{"instances": [[' + ",".join(["1"] * 63) + ", true]]}", "application/json", "instances[0][63] is bool"),
        ('{"instances": [{"pixel_0": 1, "bogus": 2}]}', "application/json", "instances[0] has unknown column(s) ['bogus']"),
        ('{"instances": [[1], {"a": 1}]}', "application/json", "not a mix"),
        ('{"instances": ' + json.dumps([[0] * 64] * 1001) + "}", "application/json", "has 1001 rows; at most 1000"),
        ("1,2,3", "application/x-npy", "content type 'application/x-npy' is not supported"),
        # numpy would turn "5" into 5.0 and true into 1.0: the fast path must hand these to the checks
        ('{"instances": [[' + ",".join(["1"] * 63) + ', "5"]]}', "application/json", "column 'pixel_63' is the string '5'"),
        ('{"instances": [[' + ",".join(["1"] * 63) + ", 1e400]]}", "application/json", "instances[0][63] is inf; expected a finite number"),
        ('{"instances": [[' + ",".join(["1"] * 63) + ", [1]]]}", "application/json", "instances[0][63] is list"),
        (",".join(["1"] * 63) + ",inf", "text/csv", "CSV value 'inf' is not a finite number"),
    ],
)
def test_bad_input_is_named(model: inference.LoadedModel, body: str, content_type: str, message: str) -> None:
    with pytest.raises(inference.InvalidInput) as raised:
        inference.predict_rows(model, body, content_type)
    assert message in str(raised.value)


def booster_answers(model: inference.LoadedModel, features: np.ndarray) -> list[dict[str, object]]:
    """What the booster itself says about these feature rows, in the answer's shape."""
    probabilities = model.booster.predict(xgb.DMatrix(features.astype(np.float32)))
    return [
        {"label": model.spec.labels[int(row.argmax())], "probabilities": {label: round(float(p), 6) for label, p in zip(model.spec.labels, row, strict=True)}}
        for row in probabilities
    ]


def test_single_rows_and_a_1000_row_batch_equal_the_booster(model: inference.LoadedModel, digits: pd.DataFrame) -> None:
    features = digits.drop(columns="label").to_numpy(dtype=np.float64)[:1000]
    expected = booster_answers(model, features)
    batch = inference.predict_rows(model, json.dumps({"instances": features.tolist()}))
    assert batch == expected
    for index in (0, 1, 517, 999):
        assert inference.predict_rows(model, json.dumps({"instances": [features[index].tolist()]})) == [expected[index]]


def test_fast_path_equals_the_careful_path_on_gaps(model: inference.LoadedModel, digits: pd.DataFrame) -> None:
    """Rows with nulls: the NumPy path (array + median fill) gives the frame path's features exactly."""
    rows = digits.drop(columns="label").head(50).to_numpy(dtype=np.float64).tolist()
    rng = np.random.default_rng(0)
    for row in rows:
        for position in rng.choice(64, 8, replace=False):
            row[position] = None
    payload = {"instances": rows}
    fast = inference.numeric_rows(payload, model.spec)
    assert fast is not None and np.isnan(fast).sum() == 400
    careful = model.spec.transform(inference.parse_rows(payload, model.spec))
    assert np.array_equal(inference.features_for(payload, model.spec), careful)
    assert inference.predict_rows(model, json.dumps(payload)) == booster_answers(model, careful)


def test_records_and_categoricals_take_the_careful_path(model: inference.LoadedModel, digits: pd.DataFrame) -> None:
    records = digits.drop(columns="label").head(3).to_dict(orient="records")
    assert inference.numeric_rows({"instances": records}, model.spec) is None
    assert [p["label"] for p in inference.predict_rows(model, json.dumps({"instances": records}))] == [str(v) for v in digits["label"].head(3)]
