"""Container parity: the step scripts end to end under the Python and libraries of the SageMaker
images that run them, on the digits and on an MNIST-shaped CSV.

preprocess.py runs in `.parity/sklearn-1.4-2` (SKLearn processing 1.4-2: Python 3.10, pandas 2.3.2,
pyarrow 17); train.py, evaluate.py and inference.py in `.parity/xgboost-3.0-5` (XGBoost 3.0-5:
Python 3.10, xgboost 3.0.5, pandas 2.2.3 and no pyarrow); your own script (train_custom.py) trains
and inference.py serves its joblib model in the SKLearn image (scikit-learn 1.4.2, no xgboost). `make parity-venvs` (a prerequisite of
`make test`) builds them from parity/*.txt; without a Python 3.10 this module is skipped.

Each step is a fresh process started the way the container starts it: `python <script>` from a
folder holding only the scripts, with no PYTHONPATH, so a sibling import or a library the image
lacks fails here as it would on SageMaker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline_steps import inference
from sagelab.code_bundle import stage_code_bundle
from sagelab.datasets import DIGITS_CSV
from sagelab.mnist_like import write_mnist_like_csv
from sagelab.pipeline_definition import SOURCEDIR_ARCHIVE, STEP_SCRIPTS
from sagelab.step_contract import USER_SCRIPT_HYPERPARAMETER

REPO_ROOT = Path(__file__).resolve().parent.parent
PARITY_DIR = REPO_ROOT / ".parity"
SKLEARN_IMAGE, XGBOOST_IMAGE = "sklearn-1.4-2", "xgboost-3.0-5"
STEP_TIMEOUT_S = 300


def image_python(image: str) -> Path:
    python = PARITY_DIR / image / "bin" / "python"
    if not (PARITY_DIR / image / ".installed").is_file():
        pytest.skip(f"container-parity venv {image} not built (make parity-venvs; needs Python 3.10)")
    return python


def pinned_versions(image: str) -> dict[str, str]:
    lines = (REPO_ROOT / "parity" / f"{image}.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def run_in_image(image: str, arguments: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    env = {**{key: value for key, value in os.environ.items() if key != "PYTHONPATH"}, **(extra_env or {})}
    completed = subprocess.run([str(image_python(image)), *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    assert completed.returncode == 0, (
        f"{image}: {' '.join(arguments[:2])} exited {completed.returncode}\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    )
    return completed.stdout


@pytest.mark.parametrize(
    ("image", "modules"),
    [(SKLEARN_IMAGE, ("sklearn", "pandas", "numpy", "pyarrow")), (XGBOOST_IMAGE, ("xgboost", "sklearn", "pandas", "numpy", "scipy", "matplotlib"))],
)
def test_venvs_are_the_images(image: str, modules: tuple[str, ...], tmp_path: Path) -> None:
    probe = "import importlib, json, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2], **{m: importlib.import_module(m).__version__ for m in sys.argv[1:]}}))"
    versions = json.loads(run_in_image(image, ["-c", probe, *modules], tmp_path))
    pins = pinned_versions(image)
    assert versions["python"] == "3.10"
    assert versions == {"python": "3.10", **{m: pins["scikit-learn" if m == "sklearn" else "xgboost-cpu" if m == "xgboost" else m] for m in modules}}


def test_xgboost_image_has_no_pyarrow(tmp_path: Path) -> None:
    """Why the splits are .npy: the image that trains and evaluates cannot read Parquet."""
    python = image_python(XGBOOST_IMAGE)
    completed = subprocess.run([str(python), "-c", "import pyarrow"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0 and "No module named 'pyarrow'" in completed.stderr


def code_dir(root: Path) -> Path:
    """The scripts alone, as the source archive and the processing jobs' code inputs deliver them."""
    code = root / "code"
    code.mkdir()
    for script in STEP_SCRIPTS:
        shutil.copyfile(REPO_ROOT / "pipeline_steps" / script, code / script)
    return code


INFERENCE_DRIVER = """
import json, sys
import inference
model = inference.model_fn(sys.argv[1])
answers = {}
for name, body, content_type in json.loads(sys.stdin.read()):
    text, produced = inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), "application/json")
    answers[name] = json.loads(text)["predictions"]
print(json.dumps(answers))
"""


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["digits", "mnist-shaped"])
def test_step_scripts_run_in_the_images(dataset: str, tmp_path: Path) -> None:
    code = code_dir(tmp_path)
    (tmp_path / "in").mkdir()
    if dataset == "digits":
        shutil.copyfile(DIGITS_CSV, tmp_path / "in" / "digits.csv")
        input_format, threshold = "auto", 0.9
    else:
        write_mnist_like_csv(tmp_path / "in" / "mnist.csv", 1500, seed=9)
        input_format, threshold = "csv-label-first", 0.7
    splits = tmp_path / "splits"
    run_in_image(SKLEARN_IMAGE, ["preprocess.py", "--input-dir", str(tmp_path / "in"), "--output-dir", str(splits), "--input-format", input_format], code)

    model_dir = tmp_path / "model"
    train_args = ["--train", str(splits / "train"), "--validation", str(splits / "validation"), "--spec", str(splits / "spec")]
    log = run_in_image(
        XGBOOST_IMAGE, ["train.py", *train_args, "--model-dir", str(model_dir), "--output-data-dir", str(tmp_path / "output"), "--num_round", "30"], code
    )
    assert "validation-accuracy=" in log

    packaged = tmp_path / "packaged"  # evaluate receives SageMaker's model.tar.gz
    packaged.mkdir()
    with tarfile.open(packaged / "model.tar.gz", "w:gz") as archive:
        for path in model_dir.iterdir():
            archive.add(path, arcname=path.name)
    baseline_args = ["--train-dir", str(splits / "train"), "--spec-dir", str(splits / "spec")]
    run_in_image(
        XGBOOST_IMAGE,
        ["evaluate.py", "--model-dir", str(packaged), "--test-dir", str(splits / "test"), "--output-dir", str(tmp_path / "eval"), *baseline_args],
        code,
    )
    summary = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["sagelab_summary"]
    assert summary["metrics"]["accuracy"] >= threshold and summary["plots"] == ["confusion_matrix.png", "roc_curve.png"]
    assert_baseline(tmp_path / "eval", splits, summary["test_rows"])

    # Serving in the image answers like inference.py here, for each request shape it accepts.
    model = inference.model_fn(model_dir)
    rows = [[float(v) for v in row] for row in _test_rows(splits)]
    names = model.spec.feature_columns
    requests = [
        ("single", json.dumps({"instances": rows[:1]}), "application/json"),
        ("batch", json.dumps({"instances": rows}), "application/json"),
        ("records", json.dumps({"instances": [dict(zip(names, row, strict=True)) for row in rows[:3]]}), "application/json"),
        ("csv", "\n".join(",".join(repr(v) for v in row) for row in rows[:3]), "text/csv"),
        ("gaps", json.dumps({"instances": [[None] * len(names)]}), "application/json"),
    ]
    driver = subprocess.run(
        [str(image_python(XGBOOST_IMAGE)), "-c", INFERENCE_DRIVER, str(model_dir)],
        cwd=code,
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    in_image = json.loads(driver.stdout.splitlines()[-1])
    for name, body, content_type in requests:
        here = inference.predict_rows(model, body, content_type)
        assert [p["label"] for p in in_image[name]] == [p["label"] for p in here], name
        for theirs, ours in zip(in_image[name], here, strict=True):
            assert all(abs(theirs["probabilities"][label] - p) <= 2e-6 for label, p in ours["probabilities"].items()), name


def assert_baseline(evaluation: Path, splits: Path, test_rows: int) -> None:
    """The drift check's baseline (decision 0013) as the image wrote it: every feature column of the
    spec from the training split, and the prediction distribution of every test row."""
    spec = json.loads((splits / "spec" / "feature_spec.json").read_text())
    statistics = json.loads((evaluation / "statistics.json").read_text())
    assert [f["name"] for f in statistics["features"]] == spec["feature_columns"]
    assert statistics["dataset"]["item_count"] == json.loads((splits / "spec" / "data_summary.json").read_text())["rows"]["train"]
    constraints = json.loads((evaluation / "constraints.json").read_text())
    assert [f["name"] for f in constraints["features"]] == spec["feature_columns"]
    (prediction,) = json.loads((evaluation / "prediction_statistics.json").read_text())["features"]
    section = prediction.get("string_statistics") or prediction["numerical_statistics"]
    assert section["common"]["num_present"] == test_rows


def _test_rows(splits: Path) -> list[list[float]]:
    import numpy as np

    return np.load(splits / "test" / "features.npy")[:200].tolist()


# -- the kinds of model of decision 0011 -------------------------------------------------------------
def evaluate_alone(root: Path) -> Path:
    """evaluate.py in a folder of its own: the processing job's single code file."""
    folder = root / "evaluate_code"
    folder.mkdir()
    shutil.copyfile(REPO_ROOT / "pipeline_steps" / "evaluate.py", folder / "evaluate.py")
    return folder


def evaluation_summary(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "evaluation.json").read_text())["sagelab_summary"])


CUSTOM_TRAINER = """
import sys
from pathlib import Path
import joblib, numpy as np
from sklearn.ensemble import RandomForestClassifier
splits, model = Path(sys.argv[1]), Path(sys.argv[2])
model.mkdir()
features, target = np.load(splits / "train" / "features.npy"), np.load(splits / "train" / "target.npy")
joblib.dump(RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1).fit(features, target), model / "model.joblib")
(model / "feature_spec.json").write_text((splits / "spec" / "feature_spec.json").read_text())
"""

CLUSTERING_DRIVER = """
import json, sys
from pathlib import Path
import numpy as np
import evaluate
splits, centroids = Path(sys.argv[1]), np.load(sys.argv[2])
features, target = evaluate.load_test_split(splits / "test")
section, flat = evaluate.clustering_metrics(features, centroids, target)
print(json.dumps({"flat": flat, "plots": evaluate.plot_cluster_label_matrix(section, Path(sys.argv[3]))}))
"""


SERVING_DRIVER = """
import json, sys
import inference
model = inference.model_fn(sys.argv[1])
answers = {}
for name, body, content_type in json.loads(sys.stdin.read()):
    try:
        text, produced = inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), "application/json")
        answers[name] = json.loads(text)["predictions"]
    except inference.InvalidInput as error:
        answers[name] = {"invalid": str(error)}
print(json.dumps(answers))
"""


@pytest.mark.slow
def test_every_kind_evaluates_in_its_image(tmp_path: Path) -> None:
    """Regression (XGBoost image), Autopilot predictions (XGBoost image), a custom scikit-learn model
    trained and evaluated in the SKLearn image (no matplotlib there: no PNGs), clustering metrics in
    the XGBoost image; preprocess's tabular exports in the SKLearn image."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LogisticRegression

    code = code_dir(tmp_path)
    alone = evaluate_alone(tmp_path)
    (tmp_path / "digits_in").mkdir()
    shutil.copyfile(DIGITS_CSV, tmp_path / "digits_in" / "digits.csv")
    digits = tmp_path / "digits"
    run_in_image(SKLEARN_IMAGE, ["preprocess.py", "--input-dir", str(tmp_path / "digits_in"), "--output-dir", str(digits), "--algorithm", "autopilot"], code)
    kmeans_splits = tmp_path / "kmeans"
    run_in_image(
        SKLEARN_IMAGE, ["preprocess.py", "--input-dir", str(tmp_path / "digits_in"), "--output-dir", str(kmeans_splits), "--algorithm", "kmeans"], code
    )
    assert len((kmeans_splits / "tabular" / "train" / "train.csv").read_text().splitlines()) == 1257
    assert json.loads((kmeans_splits / "spec" / "data_summary.json").read_text())["feature_dim"] == 64

    # Regression: XGBoost trains and evaluate.py gates on RMSE with the default arguments.
    (tmp_path / "diabetes_in").mkdir()
    load_diabetes(as_frame=True).frame.to_csv(tmp_path / "diabetes_in" / "diabetes.csv", index=False)
    diabetes = tmp_path / "diabetes"
    run_in_image(
        SKLEARN_IMAGE, ["preprocess.py", "--input-dir", str(tmp_path / "diabetes_in"), "--output-dir", str(diabetes), "--target-column", "target"], code
    )
    train_args = ["--train", str(diabetes / "train"), "--validation", str(diabetes / "validation"), "--spec", str(diabetes / "spec")]
    run_in_image(
        XGBOOST_IMAGE, ["train.py", *train_args, "--model-dir", str(tmp_path / "rmodel"), "--output-data-dir", str(tmp_path / "rout"), "--eta", "0.05"], code
    )
    log = run_in_image(
        XGBOOST_IMAGE,
        [
            "evaluate.py",
            "--model-dir",
            str(tmp_path / "rmodel"),
            "--test-dir",
            str(diabetes / "test"),
            "--output-dir",
            str(tmp_path / "reval"),
            "--train-dir",
            str(diabetes / "train"),
            "--spec-dir",
            str(diabetes / "spec"),
        ],
        alone,
    )
    summary = evaluation_summary(tmp_path / "reval")
    assert_baseline(tmp_path / "reval", diabetes, summary["test_rows"])
    assert "Gate passed: test rmse" in log and summary["gate"]["passed"] == 1
    assert summary["plots"] == ["residuals.png", "predicted_vs_actual.png"]

    # Autopilot: a real model's labels for tabular/test/test.csv, as the batch transform writes them.
    train_frame = pd.read_csv(digits / "tabular" / "train" / "train.csv")
    model = LogisticRegression(max_iter=2000).fit(train_frame.drop(columns="label").to_numpy(), train_frame["label"].astype(str))
    test_rows = pd.read_csv(digits / "tabular" / "test" / "test.csv", header=None).to_numpy()
    (tmp_path / "transform").mkdir()
    (tmp_path / "transform" / "test.csv.out").write_text("".join(f"{label}\n" for label in model.predict(test_rows)))
    autopilot_args = ["--algorithm", "autopilot", "--test-dir", str(digits / "test"), "--spec-dir", str(digits / "spec")]
    run_in_image(
        XGBOOST_IMAGE, ["evaluate.py", *autopilot_args, "--predictions-dir", str(tmp_path / "transform"), "--output-dir", str(tmp_path / "aeval")], alone
    )
    summary = evaluation_summary(tmp_path / "aeval")
    assert summary["metrics"]["accuracy"] > 0.9 and summary["plots"] == ["confusion_matrix.png"]

    # Custom: trained and evaluated in the SKLearn image (joblib across scikit-learn versions is not safe).
    run_in_image(SKLEARN_IMAGE, ["-c", CUSTOM_TRAINER, str(digits), str(tmp_path / "cmodel")], tmp_path)
    log = run_in_image(
        SKLEARN_IMAGE,
        [
            "evaluate.py",
            "--algorithm",
            "custom",
            "--model-dir",
            str(tmp_path / "cmodel"),
            "--test-dir",
            str(digits / "test"),
            "--output-dir",
            str(tmp_path / "ceval"),
            "--train-dir",
            str(digits / "train"),
            "--spec-dir",
            str(digits / "spec"),
        ],
        alone,
    )
    summary = evaluation_summary(tmp_path / "ceval")
    assert_baseline(tmp_path / "ceval", digits, summary["test_rows"])
    assert summary["metrics"]["roc_auc"] > 0.95 and summary["gate"]["passed"] == 1
    assert summary["plots"] == [] and "plots skipped (No module named 'matplotlib')" in log

    # Clustering metrics from centroids in the XGBoost image (the model file's parser is the K-Means change's).
    from sklearn.cluster import KMeans

    features = np.load(kmeans_splits / "train" / "features.npy")
    np.save(tmp_path / "centroids.npy", KMeans(n_clusters=10, n_init=2, random_state=0).fit(features).cluster_centers_)
    (tmp_path / "keval").mkdir()
    out = run_in_image(XGBOOST_IMAGE, ["-c", CLUSTERING_DRIVER, str(kmeans_splits), str(tmp_path / "centroids.npy"), str(tmp_path / "keval")], alone)
    result = json.loads(out.splitlines()[-1])
    assert result["flat"]["silhouette"] > 0.05 and result["flat"]["adjusted_rand_index"] > 0.4 and result["plots"] == ["cluster_label_matrix.png"]


@pytest.mark.slow
def test_your_own_script_trains_and_serves_in_the_sklearn_image(tmp_path: Path) -> None:
    """The README's example from the real code bundle (sourcedir.tar.gz unpacked as /opt/ml/code, the
    script under custom/), trained by train_custom.py and served by inference.py from the model's
    code/ folder, all under the SKLearn image's Python and libraries (joblib within one scikit-learn)."""
    bundle = stage_code_bundle(tmp_path / "bundle", custom_scripts=[REPO_ROOT / "examples" / "custom_train.py"])
    code = tmp_path / "code"
    with tarfile.open(bundle.directory / SOURCEDIR_ARCHIVE) as archive:
        archive.extractall(code, filter="data")
    (tmp_path / "in").mkdir()
    shutil.copyfile(DIGITS_CSV, tmp_path / "in" / "digits.csv")
    splits, model_dir = tmp_path / "splits", tmp_path / "model"
    run_in_image(SKLEARN_IMAGE, ["preprocess.py", "--input-dir", str(tmp_path / "in"), "--output-dir", str(splits)], code)
    contract = {f"SM_CHANNEL_{name.upper()}": str(splits / name) for name in ("train", "validation", "spec")} | {"SM_MODEL_DIR": str(model_dir)}
    log = run_in_image(
        SKLEARN_IMAGE, ["train_custom.py", f"--{USER_SCRIPT_HYPERPARAMETER}", "custom/custom_train.py", "--regularization", "0.5"], code, contract
    )
    assert "validation-accuracy=" in log
    assert sorted(p.name for p in model_dir.iterdir()) == ["code", "feature_spec.json", "model.joblib", "training_report.json"]

    rows = _test_rows(splits)
    names = json.loads((model_dir / "feature_spec.json").read_text())["feature_columns"]
    requests = [
        ("single", json.dumps({"instances": rows[:1]}), "application/json"),
        ("batch", json.dumps({"instances": rows}), "application/json"),
        ("records", json.dumps({"instances": [dict(zip(names, row, strict=True)) for row in rows[:3]]}), "application/json"),
        ("csv", "\n".join(",".join(repr(v) for v in row) for row in rows[:3]), "text/csv"),
        ("short row", json.dumps({"instances": [[1.0, 2.0]]}), "application/json"),
    ]
    serving = subprocess.run(  # as the container does: SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code
        [str(image_python(SKLEARN_IMAGE)), "-c", SERVING_DRIVER, str(model_dir)],
        cwd=model_dir / "code",
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )
    assert serving.returncode == 0, serving.stderr[-3000:]
    answers = json.loads(serving.stdout.splitlines()[-1])
    import numpy as np

    truth = np.load(splits / "test" / "target.npy")[: len(rows)]
    labels = [int(p["label"]) for p in answers["batch"]]
    assert np.mean(np.array(labels) == truth) >= 0.9
    assert answers["single"] == answers["batch"][:1] and answers["records"] == answers["csv"] == answers["batch"][:3]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in answers["batch"])
    assert answers["short row"] == {"invalid": "instances[0] has 2 values; expected 64"}
