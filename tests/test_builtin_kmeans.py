"""The local twin of built-in K-Means: its MXNet model file, training on digits, and its inference container.

The MXNet files under tests/fixtures/mxnet/ were written by real mxnet 1.9.1 (see the README there):
the reader must read them to exactly the arrays MXNet was given, and the writer must reproduce their
bytes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import pairwise_distances, pairwise_distances_argmin, silhouette_score

from pipeline_steps.evaluate import read_mxnet_ndarrays
from sagelab.local.builtin_kmeans import MODEL_FILE_NAME, BuiltinAlgorithmError, KMeansContainer, train, write_mxnet_ndarrays

MXNET_FIXTURES = Path(__file__).parent / "fixtures" / "mxnet"
DIGITS_CSV = Path(__file__).parents[1] / "sagelab" / "data" / "digits.csv"
DENSE_FIXTURES = ["kmeans_centroids", "named_dict", "dtypes", "empty_list"]
# The K-Means image's metric definitions, as SageMaker's documentation and SDK examples give them.
METRIC_REGEX = {
    "train:msd": r"#quality_metric: host=\S+, train msd <loss>=(\S+)",
    "test:msd": r"#quality_metric: host=\S+, test msd <loss>=(\S+)",
    "test:ssd": r"#quality_metric: host=\S+, test ssd <loss>=(\S+)",
}


def expected_arrays(name: str) -> tuple[list[np.ndarray], list[str] | None]:
    saved = np.load(MXNET_FIXTURES / f"{name}.npz")
    arrays = [saved[str(i)] for i in range(len([k for k in saved.files if k != "__names__"]))]
    names = [str(n) for n in saved["__names__"]] if "__names__" in saved.files else None
    return arrays, names


# --- The MXNet NDArray list format --------------------------------------------------------------------


@pytest.mark.parametrize("name", [*DENSE_FIXTURES, "np_semantics"])
def test_reader_reads_what_mxnet_wrote(name: str) -> None:
    arrays, _ = expected_arrays(name)
    loaded = read_mxnet_ndarrays(MXNET_FIXTURES / f"{name}.params")
    assert [(a.shape, a.dtype) for a in loaded] == [(a.shape, a.dtype) for a in arrays]
    for got, want in zip(loaded, arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_reader_gives_kmeans_centroids_as_the_first_array() -> None:
    (centroids,) = read_mxnet_ndarrays(MXNET_FIXTURES / "kmeans_centroids.params")
    assert centroids.shape == (10, 64) and centroids.dtype == np.float32
    assert centroids.flags.writeable  # a copy, not a view of the file's bytes


@pytest.mark.parametrize("name", DENSE_FIXTURES)
def test_writer_output_is_byte_identical_to_mxnet(name: str, tmp_path: Path) -> None:
    arrays, names = expected_arrays(name)
    write_mxnet_ndarrays(tmp_path / "out.params", arrays, names)
    assert (tmp_path / "out.params").read_bytes() == (MXNET_FIXTURES / f"{name}.params").read_bytes()


def test_writer_refuses_what_mxnet_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0-d"):
        write_mxnet_ndarrays(tmp_path / "x", [np.array(1.0)])
    with pytest.raises(ValueError, match="complex128"):
        write_mxnet_ndarrays(tmp_path / "x", [np.zeros(2, dtype=np.complex128)])
    with pytest.raises(ValueError, match="2 arrays but 1 names"):
        write_mxnet_ndarrays(tmp_path / "x", [np.zeros(2), np.zeros(3)], ["a"])


SUPPORTED_DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.int8, np.bool_, np.int16, np.uint16, np.uint32, np.uint64]


@st.composite
def array_lists(draw: st.DrawFn) -> tuple[list[np.ndarray], list[str] | None]:
    count = draw(st.integers(0, 4))
    arrays = [
        draw(hnp.arrays(dtype=draw(st.sampled_from(SUPPORTED_DTYPES)), shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)))
        for _ in range(count)
    ]
    names = draw(st.none() | st.lists(st.text(max_size=8), min_size=count, max_size=count))
    return arrays, names


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=array_lists(), big_endian=st.booleans())
def test_write_then_read_round_trips(case: tuple[list[np.ndarray], list[str] | None], big_endian: bool, tmp_path: Path) -> None:
    arrays, names = case
    if big_endian:  # the file is little-endian whatever the caller's byte order
        arrays = [a.astype(a.dtype.newbyteorder(">")) for a in arrays]
    write_mxnet_ndarrays(tmp_path / "round_trip.params", arrays, names)
    loaded = read_mxnet_ndarrays(tmp_path / "round_trip.params")
    assert [(a.shape, a.dtype.newbyteorder("=")) for a in loaded] == [(a.shape, a.dtype.newbyteorder("=")) for a in arrays]
    for got, want in zip(loaded, arrays, strict=True):
        np.testing.assert_array_equal(got, want)  # NaN equals NaN here


def _legacy_record(magic_and_shape: bytes, values: np.ndarray, type_flag: int) -> bytes:
    """A V1 or pre-V1 record as NDArray::LegacyLoad reads it: shape, CPU context, type flag, values."""
    return magic_and_shape + np.array([1, 0, type_flag], dtype="<i4").tobytes() + values.astype(values.dtype.newbyteorder("<")).tobytes()


def _list_file(records: list[bytes]) -> bytes:
    return np.array([0x112, 0, len(records)], dtype="<u8").tobytes() + b"".join(records) + np.zeros(1, dtype="<u8").tobytes()


def test_reader_reads_legacy_v1_and_magicless_records(tmp_path: Path) -> None:
    # Hand-built from MXNet's LegacyTShapeLoad: V1 = magic 0xF993FAC8 + int32 ndim + int64 dims;
    # before V1 the first uint32 is ndim and the dims are uint32. MXNet 1.9 cannot write either.
    v1_values = np.arange(6, dtype=np.float64).reshape(2, 3)
    v1 = np.array([0xF993FAC8], dtype="<u4").tobytes() + np.array([2], dtype="<i4").tobytes() + np.array([2, 3], dtype="<i8").tobytes()
    old_values = np.array([[1, -2], [3, -4]], dtype=np.int32)
    old = np.array([2, 2, 2], dtype="<u4").tobytes()
    (tmp_path / "legacy.params").write_bytes(_list_file([_legacy_record(v1, v1_values, 1), _legacy_record(old, old_values, 4)]))
    loaded = read_mxnet_ndarrays(tmp_path / "legacy.params")
    np.testing.assert_array_equal(loaded[0], v1_values)
    np.testing.assert_array_equal(loaded[1], old_values)
    assert [a.dtype for a in loaded] == [np.float64, np.int32]


def _centroids_file() -> bytes:
    return (MXNET_FIXTURES / "kmeans_centroids.params").read_bytes()


def _patched(offset: int, value: bytes) -> bytes:
    data = bytearray(_centroids_file())
    data[offset : offset + len(value)] = value
    return bytes(data)


# Offsets in kmeans_centroids.params: 0 list header, 16 array count, 24 magic, 28 storage type,
# 32 ndim, 36 dims, 52 context, 60 type flag, 64 values (2560 bytes), 2624 name count.
CORRUPT_FILES = {
    "not an NDArray file": (b'{"not": "mxnet"}' + bytes(16), r"offset 0, expected the NDArray list header 0x112"),
    "empty file": (b"", r"offset 0, expected the list header \(uint64\) \(8 bytes\) but only 0 bytes remain"),
    "truncated in the values": (_centroids_file()[:1000], r"offset 64, expected array 0's 640 float32 values of shape \(10, 64\) \(2560 bytes\)"),
    "truncated before the names": (_centroids_file()[:2624], r"offset 2624, expected the number of names"),
    "unknown record magic": (_patched(24, b"\xde\xad\xbe\xef"), r"offset 24, expected array 0's magic number 0xF993FAC9 \(V2\)"),
    "unknown type flag": (_patched(60, np.array([12], "<i4").tobytes()), r"offset 60, array 0 has type flag 12; expected one of"),
    "absurd ndim": (_patched(32, np.array([1000], "<i4").tobytes()), r"offset 32, expected a shape's ndim between -1 and 32, found 1000"),
    "negative dimension": (_patched(36, np.array([-5], "<i8").tobytes()), r"offset 24, array 0 has a negative dimension"),
    "array count larger than the file": (_patched(16, np.array([10**12], "<u8").tobytes()), r"offset 16, the file declares 1000000000000 arrays"),
    "names for some arrays only": (_patched(2624, np.array([3], "<u8").tobytes()), r"offset 2624, expected 0 names or one per array \(1\), found 3"),
    "trailing bytes": (_centroids_file() + b"\x00" * 5, r"offset 2632, expected the end of the file after the names, found 5 more bytes"),
}


@pytest.mark.parametrize("case", CORRUPT_FILES, ids=list(CORRUPT_FILES))
def test_reader_names_the_offset_and_what_it_expected(case: str, tmp_path: Path) -> None:
    data, message = CORRUPT_FILES[case]
    (tmp_path / "model_algo-1").write_bytes(data)
    with pytest.raises(ValueError, match=message) as caught:
        read_mxnet_ndarrays(tmp_path / "model_algo-1")
    assert "model_algo-1 is not a readable MXNet NDArray file" in str(caught.value)


def test_reader_refuses_a_sparse_array_mxnet_wrote() -> None:
    with pytest.raises(ValueError, match=r"offset 24, array 0 is a sparse \(row_sparse\) NDArray; expected dense arrays"):
        read_mxnet_ndarrays(MXNET_FIXTURES / "row_sparse.params")


# --- Training -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_features() -> np.ndarray:
    table = np.loadtxt(DIGITS_CSV, delimiter=",", skiprows=1)
    return table[:, :-1]  # the last column is the digit label; K-Means reads features only


@pytest.fixture(scope="module")
def digits_channels(digits_features: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("channels")
    channels = {"train": root / "train", "test": root / "test"}
    for channel, rows in (("train", digits_features[:1500]), ("test", digits_features[1500:])):
        channels[channel].mkdir()
        np.savetxt(channels[channel] / f"{channel}.csv", rows, delimiter=",", fmt="%g")
    return channels


@pytest.fixture(scope="module")
def trained(digits_channels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], list[str]]:
    model_dir = tmp_path_factory.mktemp("model")
    lines: list[str] = []
    metrics = train(digits_channels, {"k": "10", "feature_dim": "64", "eval_metrics": '["msd", "ssd"]'}, model_dir, lines.append)
    return model_dir, metrics, lines


def test_training_on_digits_writes_k_centroids_that_cluster_the_data(trained: tuple[Path, dict[str, float], list[str]], digits_features: np.ndarray) -> None:
    model_dir, _, _ = trained
    (centroids,) = read_mxnet_ndarrays(model_dir / MODEL_FILE_NAME)
    assert centroids.shape == (10, 64) and centroids.dtype == np.float32
    answer, _ = KMeansContainer(model_dir).invoke(_csv(digits_features), "text/csv", "application/json")
    clusters = np.array([p["closest_cluster"] for p in json.loads(answer)["predictions"]])
    np.testing.assert_array_equal(clusters, pairwise_distances_argmin(digits_features, centroids))
    assert len(np.unique(clusters)) == 10
    assert silhouette_score(digits_features, clusters) > 0.1


def test_training_logs_and_returns_the_builtin_metrics(trained: tuple[Path, dict[str, float], list[str]], digits_features: np.ndarray) -> None:
    model_dir, metrics, lines = trained
    assert set(metrics) == {"train:msd", "test:msd", "test:ssd"}
    log = "\n".join(lines)
    for name, regex in METRIC_REGEX.items():
        assert float(re.findall(regex, log)[-1]) == pytest.approx(metrics[name], rel=1e-12)
    (centroids,) = read_mxnet_ndarrays(model_dir / MODEL_FILE_NAME)
    train_rows, test_rows = digits_features[:1500], digits_features[1500:]
    assert metrics["train:msd"] == pytest.approx((pairwise_distances(train_rows, centroids).min(axis=1) ** 2).mean(), rel=1e-9)
    assert metrics["test:ssd"] == pytest.approx(metrics["test:msd"] * len(test_rows), rel=1e-9)


def test_training_is_reproducible_and_test_channel_is_optional(
    digits_channels: dict[str, Path], trained: tuple[Path, dict[str, float], list[str]], tmp_path: Path
) -> None:
    lines: list[str] = []
    metrics = train({"train": digits_channels["train"]}, {"k": "10", "feature_dim": "64"}, tmp_path, lines.append)
    assert set(metrics) == {"train:msd"}
    assert "Test data is not provided." in lines
    assert (tmp_path / MODEL_FILE_NAME).read_bytes() == (trained[0] / MODEL_FILE_NAME).read_bytes()


def test_hyperparameters_change_the_fit(digits_channels: dict[str, Path], trained: tuple[Path, dict[str, float], list[str]], tmp_path: Path) -> None:
    hyperparameters = {"k": "10", "feature_dim": "64", "init_method": "kmeans++", "epochs": "3", "mini_batch_size": "256", "extra_center_factor": "4"}
    metrics = train(digits_channels, hyperparameters, tmp_path, lambda _: None)
    assert (tmp_path / MODEL_FILE_NAME).read_bytes() != (trained[0] / MODEL_FILE_NAME).read_bytes()
    assert metrics["train:msd"] < 1.2 * trained[1]["train:msd"]  # still a good clustering


@pytest.fixture(scope="module")
def small_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("small")
    (directory / "part-0.csv").write_text("0,0,1\n0,1,0\n5,5,5\n")
    return directory


HYPERPARAMETER_ERRORS = {
    "missing k": ({"feature_dim": "3"}, r"missing required K-Means hyperparameter\(s\) k"),
    "missing feature_dim": ({"k": "2"}, r"missing required K-Means hyperparameter\(s\) feature_dim"),
    "k not a number": ({"k": "ten", "feature_dim": "3"}, r"hyperparameter k='ten' is invalid: expected an integer of at least 2"),
    "k not an integer": ({"k": "2.5", "feature_dim": "3"}, r"hyperparameter k='2.5' is invalid"),
    "k of 1": ({"k": "1", "feature_dim": "3"}, r"hyperparameter k='1' is invalid"),
    "k above the rows": (
        {"k": "4", "feature_dim": "3"},
        r"hyperparameter k=4 but channel 'train' has only 3 rows; expected k to be at most the number of rows",
    ),
    "feature_dim not the width": ({"k": "2", "feature_dim": "4"}, r"hyperparameter feature_dim=4 but channel 'train' has 3 columns"),
    "feature_dim of 0": ({"k": "2", "feature_dim": "0"}, r"hyperparameter feature_dim='0' is invalid: expected a positive integer"),
    "init_method": ({"k": "2", "feature_dim": "3", "init_method": "k-means++"}, r"init_method='k-means\+\+' is invalid: expected one of random, kmeans\+\+"),
    "epochs": ({"k": "2", "feature_dim": "3", "epochs": "0"}, r"hyperparameter epochs='0' is invalid: expected a positive integer"),
    "local_lloyd_tol": ({"k": "2", "feature_dim": "3", "local_lloyd_tol": "2"}, r"local_lloyd_tol='2' is invalid: expected a number in \[0, 1\]"),
    "extra_center_factor": (
        {"k": "2", "feature_dim": "3", "extra_center_factor": "many"},
        r"extra_center_factor='many' is invalid: expected a positive integer or 'auto'",
    ),
    "eval_metrics": ({"k": "2", "feature_dim": "3", "eval_metrics": '["rmse"]'}, r"eval_metrics='\[\"rmse\"\]' is invalid: expected a JSON list of \"msd\""),
    "unknown name": ({"k": "2", "feature_dim": "3", "learning_rate": "0.1"}, r"unknown K-Means hyperparameter\(s\) learning_rate: expected names among"),
}


@pytest.mark.parametrize("case", HYPERPARAMETER_ERRORS, ids=list(HYPERPARAMETER_ERRORS))
def test_training_refuses_bad_hyperparameters(case: str, small_channel: Path, tmp_path: Path) -> None:
    hyperparameters, message = HYPERPARAMETER_ERRORS[case]
    with pytest.raises(BuiltinAlgorithmError, match=message):
        train({"train": small_channel}, hyperparameters, tmp_path, lambda _: None)
    assert not (tmp_path / MODEL_FILE_NAME).exists()


def test_sdk_style_hyperparameters_are_accepted(small_channel: Path, tmp_path: Path) -> None:
    # What the SageMaker SDK's KMeans estimator sends: force_dense, a JSON list, every value a string.
    hyperparameters = {
        "k": "2",
        "feature_dim": "3",
        "force_dense": "True",
        "eval_metrics": '["msd", "ssd"]',
        "local_lloyd_num_trials": "3",
        "_num_gpus": "auto",
    }
    metrics = train({"train": small_channel, "test": small_channel}, hyperparameters, tmp_path, lambda _: None)
    assert set(metrics) == {"train:msd", "test:msd", "test:ssd"}
    assert metrics["train:msd"] == pytest.approx(metrics["test:msd"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n0,0,1\n0,1,0\n", r"file part-0.csv line 1 column 1 is 'a'; expected a number \(text/csv;label_size=0: numbers only, no header\)"),
        ("0,0,1\n0,1\n", r"file part-0.csv: row 2 has 2 values but row 1 has 3"),
        ("0,0,1\n0,nan,1\n", r"line 2 column 2 is 'nan'; expected a finite number"),
        ("\n\n", r"channel 'train' .* has no rows"),
    ],
)
def test_training_refuses_bad_csv(content: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part-0.csv").write_text(content)
    with pytest.raises(BuiltinAlgorithmError, match=message):
        train({"train": tmp_path / "train"}, {"k": "2", "feature_dim": "3"}, tmp_path / "model", lambda _: None)


def test_training_needs_a_train_channel(small_channel: Path, tmp_path: Path) -> None:
    with pytest.raises(BuiltinAlgorithmError, match=r"no 'train' channel \(given: test\)"):
        train({"test": small_channel}, {"k": "2", "feature_dim": "3"}, tmp_path, lambda _: None)


# --- Serving --------------------------------------------------------------------------------------------


def _csv(rows: np.ndarray) -> bytes:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows).encode()


@pytest.fixture(scope="module")
def container(trained: tuple[Path, dict[str, float], list[str]]) -> KMeansContainer:
    return KMeansContainer(trained[0])


def test_container_answers_csv_with_the_builtin_json_shape(container: KMeansContainer, digits_features: np.ndarray) -> None:
    rows = digits_features[:5]
    body, content_type = container.invoke(_csv(rows), "text/csv", "application/json")
    assert content_type == "application/json"
    predictions = json.loads(body)["predictions"]
    assert [set(p) for p in predictions] == [{"closest_cluster", "distance_to_cluster"}] * 5
    assert all(isinstance(p["closest_cluster"], float) and isinstance(p["distance_to_cluster"], float) for p in predictions)
    distances = pairwise_distances(rows, container.centroids)  # Euclidean, not squared
    assert [p["closest_cluster"] for p in predictions] == [float(c) for c in distances.argmin(axis=1)]
    np.testing.assert_allclose([p["distance_to_cluster"] for p in predictions], distances.min(axis=1), rtol=1e-6)


def test_container_reads_every_json_form_alike(container: KMeansContainer, digits_features: np.ndarray) -> None:
    rows = digits_features[10:13]
    expected, _ = container.invoke(_csv(rows), "text/csv; charset=utf-8", "application/json")
    sparse_row = {"data": {"features": {"keys": [int(i) for i in np.flatnonzero(rows[2])], "values": [float(v) for v in rows[2][rows[2] != 0]], "shape": [64]}}}
    instances = [{"features": rows[0].tolist()}, {"data": {"features": {"values": rows[1].tolist()}}}, sparse_row]
    assert container.invoke(json.dumps({"instances": instances}).encode(), "application/json", "application/json")[0] == expected
    jsonlines = "".join(json.dumps({"features": row.tolist()}) + "\n" for row in rows).encode()
    assert container.invoke(jsonlines, "application/jsonlines", "application/json")[0] == expected


def test_container_answers_jsonlines_and_csv(container: KMeansContainer, digits_features: np.ndarray) -> None:
    request = _csv(digits_features[:3])
    predictions = json.loads(container.invoke(request, "text/csv", "application/json")[0])["predictions"]
    lines, lines_type = container.invoke(request, "text/csv", "application/jsonlines")
    assert lines_type == "application/jsonlines"
    assert [json.loads(line) for line in lines.decode().splitlines()] == predictions
    csv, csv_type = container.invoke(request, "text/csv", "text/csv")
    assert csv_type == "text/csv"
    assert csv.decode() == "".join(f"{p['closest_cluster']},{p['distance_to_cluster']}\n" for p in predictions)


BAD_REQUESTS = {
    "wrong width": (b"1,2,3\n", "text/csv", r"request row 1 has 3 values; expected 64 \(the model's feature_dim\)"),
    "not a number": (b",".join([b"1"] * 63 + [b"x"]), "text/csv", r"request line 1 column 64 is 'x'; expected a number"),
    "empty body": (b"  \n", "text/csv", r"the text/csv request body is empty; expected at least one row of 64 numbers"),
    "unsupported content type": (
        b"1",
        "application/x-recordio-protobuf",
        r"content type 'application/x-recordio-protobuf' is not supported; expected one of text/csv",
    ),
    "no content type": (b"1", "", r"content type '' is not supported"),
    "json without instances": (b'{"rows": [[1]]}', "application/json", r"has no non-empty 'instances' list; expected \{\"instances\""),
    "json not json": (b"{", "application/json", r"request body is not valid JSON"),
    "json string feature": (
        json.dumps({"instances": [{"features": ["1"] * 64}]}).encode(),
        "application/json",
        r"request instance 1 feature 1 is '1'; expected a finite number",
    ),
    "json instance without features": (b'{"instances": [[1, 2]]}', "application/json", r"request instance 1 has no 'features' list"),
    "sparse key out of range": (
        json.dumps({"instances": [{"features": {"keys": [64], "values": [1.0]}}]}).encode(),
        "application/json",
        r"sparse 'keys' \[64\]",
    ),
    "not utf-8": (b"\xff\xfe", "text/csv", r"request body is not UTF-8"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_container_rejects_bad_requests(case: str, container: KMeansContainer) -> None:
    body, content_type, message = BAD_REQUESTS[case]
    with pytest.raises(BuiltinAlgorithmError, match=message):
        container.invoke(body, content_type, "application/json")


def test_container_rejects_an_unsupported_accept(container: KMeansContainer) -> None:
    with pytest.raises(BuiltinAlgorithmError, match=r"accept 'text/html' is not supported; expected one of application/json"):
        container.invoke(_csv(np.zeros((1, 64))), "text/csv", "text/html")


def test_container_serves_a_model_file_mxnet_wrote(tmp_path: Path) -> None:
    # A model trained on AWS: model_algo-1 as MXNet saves it (here the fixture mxnet 1.9.1 wrote).
    shutil.copy(MXNET_FIXTURES / "kmeans_centroids.params", tmp_path / MODEL_FILE_NAME)
    (centroids,), _ = expected_arrays("kmeans_centroids")
    body, _ = KMeansContainer(tmp_path).invoke(_csv(centroids[[3, 7]] + 0.5), "text/csv", "application/json")
    predictions = json.loads(body)["predictions"]
    assert [p["closest_cluster"] for p in predictions] == [3.0, 7.0]
    assert all(p["distance_to_cluster"] == pytest.approx(math.sqrt(64 * 0.25), rel=1e-5) for p in predictions)


def test_container_needs_a_centroid_matrix(tmp_path: Path) -> None:
    with pytest.raises(BuiltinAlgorithmError, match=r"no model_algo-1 in .*; expected the K-Means model"):
        KMeansContainer(tmp_path)
    write_mxnet_ndarrays(tmp_path / MODEL_FILE_NAME, [np.zeros(4, dtype=np.float32)])
    with pytest.raises(
        BuiltinAlgorithmError, match=r"expected the centroids, a float \(k, feature_dim\) array, as array 0; found float32 array of shape \(4,\)"
    ):
        KMeansContainer(tmp_path)
    (tmp_path / MODEL_FILE_NAME).write_bytes(b"\x00" * 40)
    with pytest.raises(BuiltinAlgorithmError, match=r"offset 0, expected the NDArray list header"):
        KMeansContainer(tmp_path)
