"""Your own training script: train_custom.py runs it under the training contract, inference.py
serves the joblib model it saves, and the code bundle ships it. Real scikit-learn on the digits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline_steps import inference, preprocess, train_custom
from sagelab.code_bundle import code_version, stage_code_bundle
from sagelab.datasets import DIGITS_CSV
from sagelab.pipeline_definition import SOURCEDIR_ARCHIVE
from sagelab.step_contract import METRIC_LINE_FORMAT, USER_SCRIPT_HYPERPARAMETER

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "custom_train.py"


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("custom-splits")
    (root / "in").mkdir()
    (root / "in" / "digits.csv").write_bytes(DIGITS_CSV.read_bytes())
    preprocess.preprocess(root / "in", root / "splits")
    return root / "splits"


def channels(splits: Path, model_dir: Path) -> dict[str, str]:
    return {
        "SM_CHANNEL_TRAIN": str(splits / "train"),
        "SM_CHANNEL_VALIDATION": str(splits / "validation"),
        "SM_CHANNEL_SPEC": str(splits / "spec"),
        "SM_MODEL_DIR": str(model_dir),
    }


def unpacked_bundle(destination: Path, script: Path) -> Path:
    """sourcedir.tar.gz of the real code bundle, unpacked as SageMaker unpacks it into /opt/ml/code."""
    bundle = stage_code_bundle(destination / "bundle", custom_scripts=[script])
    code = destination / "code"
    with tarfile.open(bundle.directory / SOURCEDIR_ARCHIVE) as archive:
        archive.extractall(code, filter="data")
    return code


@pytest.fixture(scope="module")
def trained(splits: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The README's example, run by train_custom.py from the unpacked bundle, as the training job runs it."""
    root = tmp_path_factory.mktemp("custom-trained")
    code = unpacked_bundle(root, EXAMPLE)
    model_dir = root / "model"
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **channels(splits, model_dir), "OMP_WAIT_POLICY": "PASSIVE"}
    completed = subprocess.run(
        [sys.executable, "train_custom.py", f"--{USER_SCRIPT_HYPERPARAMETER}", "custom/custom_train.py", "--regularization", "0.5", "--eta", "0.3"],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return model_dir, completed.stdout


def test_the_example_trains_a_model_that_carries_its_spec_and_serving_code(trained: tuple[Path, str]) -> None:
    model_dir, log = trained
    assert sorted(p.name for p in model_dir.iterdir()) == ["code", "feature_spec.json", "model.joblib", "training_report.json"]
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["contract.py", "inference.py", "preprocess.py"]
    assert (model_dir / "code" / "inference.py").read_bytes() == (REPO_ROOT / "pipeline_steps" / "inference.py").read_bytes()
    # The metric line the pipeline's metric definition parses, in its exact format.
    pattern = re.escape(METRIC_LINE_FORMAT.format(split="validation", metric="accuracy", value=0.0)).replace(re.escape("0.000000"), r"([0-9.]+)")
    (accuracy,) = re.findall(pattern, log)
    assert float(accuracy) >= 0.93
    report = json.loads((model_dir / "training_report.json").read_text())
    assert report["script"] == "custom/custom_train.py" and report["validation"]["accuracy"] == pytest.approx(float(accuracy), abs=1e-6)


def test_inference_serves_the_joblib_model(trained: tuple[Path, str], splits: Path) -> None:
    model = inference.model_fn(trained[0])
    assert model.booster is None and model.estimator is not None
    digits = pd.read_csv(DIGITS_CSV)
    rows = digits.drop(columns="label").to_numpy().tolist()
    (single,) = inference.predict_rows(model, json.dumps({"instances": rows[:1]}))
    assert single["label"] == str(digits["label"].iloc[0])
    assert set(single["probabilities"]) == set(model.spec.labels) and abs(sum(single["probabilities"].values()) - 1) < 1e-4
    batch = inference.predict_rows(model, json.dumps({"instances": rows[:1000]}))
    expected = model.estimator.predict(np.asarray(rows[:1000], dtype=np.float32))
    assert [p["label"] for p in batch] == [model.spec.labels[i] for i in expected]
    # The other request shapes and the container's call sequence take the same path as for XGBoost.
    records = json.dumps({"instances": digits.drop(columns="label").head(3).to_dict(orient="records")})
    csv_text = "\n".join(",".join(str(v) for v in row) for row in rows[:3])
    assert inference.predict_rows(model, records) == inference.predict_rows(model, csv_text, "text/csv") == batch[:3]
    text, content_type = inference.output_fn(inference.predict_fn(inference.input_fn(json.dumps({"instances": rows[:2]}), "application/json"), model))
    assert content_type == "application/json" and len(json.loads(text)["predictions"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"instances": [[1, 2]]}', "instances[0] has 2 values; expected 64"),
        ('{"instances": [["x"' + ", 0" * 63 + "]]}", "is the string 'x'; expected a number or null"),
        ('{"rows": []}', 'body must be a JSON object with an "instances" array'),
    ],
)
def test_bad_input_to_the_joblib_model_is_invalid_input(trained: tuple[Path, str], body: str, message: str) -> None:
    model = inference.model_fn(trained[0])
    with pytest.raises(inference.InvalidInput, match=re.escape(message)):
        inference.predict_rows(model, body)


SERVE_WITHOUT_XGBOOST = """
import json, sys
sys.modules["xgboost"] = None  # as in the SKLearn image: any import of xgboost fails
sys.path.insert(0, sys.argv[1])
import inference
model = inference.model_fn(sys.argv[2])
print(json.dumps(inference.predict_rows(model, json.dumps({"instances": [[0] * 64]}))))
"""


def test_a_joblib_model_serves_without_xgboost(trained: tuple[Path, str]) -> None:
    model_dir = trained[0]
    completed = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(SERVE_WITHOUT_XGBOOST), str(model_dir / "code"), str(model_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    (answer,) = json.loads(completed.stdout)
    assert answer["label"] in [str(n) for n in range(10)]


def test_a_regression_estimator_answers_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    frame["price"] = 3 * frame["a"] - frame["b"] + 0.01 * rng.normal(size=300)
    (tmp_path / "in").mkdir()
    frame.to_csv(tmp_path / "in" / "houses.csv", index=False)
    preprocess.preprocess(tmp_path / "in", tmp_path / "splits", target_column="price")
    from sklearn.linear_model import LinearRegression

    features, target = preprocess.load_split(tmp_path / "splits" / "train", "train")
    import joblib

    joblib.dump(LinearRegression().fit(features, target), tmp_path / "splits" / "spec" / "model.joblib")
    model = inference.model_fn(tmp_path / "splits" / "spec")
    (answer,) = inference.predict_rows(model, json.dumps({"instances": [[1.0, 2.0]]}))
    assert answer["value"] == pytest.approx(1.0, abs=0.05)


# -- train_custom.py in this process: what reaches your script, and what it must leave ----------
def run_main(monkeypatch: pytest.MonkeyPatch, splits: Path, model_dir: Path, script: Path, *arguments: str) -> int:
    for name, value in channels(splits, model_dir).items():
        monkeypatch.setenv(name, value)
    return train_custom.main([f"--{USER_SCRIPT_HYPERPARAMETER}", str(script), *arguments])


FIT_AND_RECORD = """
import json, os, sys
import joblib, numpy as np
from sklearn.naive_bayes import GaussianNB  # fits in milliseconds
folder = os.environ["SM_CHANNEL_TRAIN"]
model = GaussianNB().fit(np.load(os.path.join(folder, "features.npy")), np.load(os.path.join(folder, "target.npy")))
with open(os.path.join(os.path.dirname(os.environ["SM_MODEL_DIR"]), "seen.json"), "w") as seen:
    json.dump({"name": __name__, "argv": sys.argv[1:], "file": __file__}, seen)
{save}
"""


def test_your_script_runs_as_main_with_the_other_hyperparameters(monkeypatch: pytest.MonkeyPatch, splits: Path, tmp_path: Path) -> None:
    script = tmp_path / "mine.py"
    script.write_text(FIT_AND_RECORD.replace("{save}", 'joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))'))
    argv_before = sys.argv[:]
    assert run_main(monkeypatch, splits, tmp_path / "model", script, "--C", "0.5", "--epochs", "3") == 0
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"name": "__main__", "argv": ["--C", "0.5", "--epochs", "3"], "file": str(script)}
    assert sys.argv == argv_before, "train_custom restores the command line"
    assert (tmp_path / "model" / "code" / "inference.py").is_file()


def test_a_script_that_saves_no_model_gets_the_line_to_add(
    monkeypatch: pytest.MonkeyPatch, splits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "forgetful.py"
    script.write_text(FIT_AND_RECORD.replace("{save}", "print('done')"))
    assert run_main(monkeypatch, splits, tmp_path / "model", script) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        f"train_custom: error: {script} saved no model: {tmp_path / 'model' / 'model.joblib'} does not exist; "
        'end your script with joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))'
    ]
    assert not (tmp_path / "model" / "code").exists()


@pytest.mark.parametrize(
    ("save", "message"),
    [
        (
            "from sklearn.svm import LinearSVC\njoblib.dump(LinearSVC().fit(model.theta_[:, :2], [0, 1] * 5), os.path.join(os.environ['SM_MODEL_DIR'], 'model.joblib'))",
            "holds a LinearSVC, which has no predict_proba method; the target is multiclass classification",
        ),
        ("joblib.dump({'weights': 1}, os.path.join(os.environ['SM_MODEL_DIR'], 'model.joblib'))", "holds a dict, which has no predict method"),
        (
            "from sklearn.linear_model import LogisticRegression as L\njoblib.dump(L().fit([[0.0], [1.0]], ['cat', 'dog']), os.path.join(os.environ['SM_MODEL_DIR'], 'model.joblib'))",
            "whose classes_ are ['cat', 'dog']; expected class positions 0..9 as in target.npy",
        ),
        (
            "from sklearn.linear_model import LogisticRegression as L\njoblib.dump(L().fit([[0.0], [1.0]], [0, 1]), os.path.join(os.environ['SM_MODEL_DIR'], 'model.joblib'))",
            "failed to predict the validation split (270 rows x 64 features, as in features.npy): ValueError",
        ),
    ],
)
def test_a_model_serving_cannot_use_is_refused(
    monkeypatch: pytest.MonkeyPatch, splits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], save: str, message: str
) -> None:
    script = tmp_path / "odd.py"
    script.write_text(FIT_AND_RECORD.replace("{save}", save))
    assert run_main(monkeypatch, splits, tmp_path / "model", script) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("train_custom: error: ") and message in error, error


def test_your_scripts_failure_is_its_exit_status(monkeypatch: pytest.MonkeyPatch, splits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    assert run_main(monkeypatch, splits, tmp_path / "model", exits) == 3
    assert capsys.readouterr().err.strip().splitlines() == [f"train_custom: error: {exits} exited with status 3"]
    raises = tmp_path / "raises.py"
    raises.write_text("raise RuntimeError('out of data')\n")
    assert run_main(monkeypatch, splits, tmp_path / "model", raises) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == f"train_custom: error: {raises} raised RuntimeError: out of data"


def test_a_missing_script_is_named(monkeypatch: pytest.MonkeyPatch, splits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(monkeypatch, splits, tmp_path / "model", Path("custom/absent.py")) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert "--user_script 'custom/absent.py': no such .py file in the source archive" in error


# -- the code bundle -------------------------------------------------------------------------------
def test_the_bundle_ships_the_script_and_its_content_changes_the_version(tmp_path: Path) -> None:
    script = tmp_path / "my_train.py"
    script.write_text("print(1)\n")
    without = stage_code_bundle(tmp_path / "plain")
    with_script = stage_code_bundle(tmp_path / "custom", custom_scripts=[script])
    with tarfile.open(with_script.directory / SOURCEDIR_ARCHIVE) as archive:
        names = archive.getnames()
        assert archive.extractfile("custom/my_train.py").read() == b"print(1)\n"  # type: ignore[union-attr]
    assert {"train_custom.py", "model_contract.py", "inference.py", "preprocess.py"} <= set(names)
    with tarfile.open(without.directory / SOURCEDIR_ARCHIVE) as archive:
        assert not [name for name in archive.getnames() if name.startswith("custom/")]
    assert with_script.version != without.version
    script.write_text("print(2)\n")
    assert code_version(custom_scripts=[script]) not in (with_script.version, without.version)
    again = stage_code_bundle(tmp_path / "again", custom_scripts=[script])
    assert (again.directory / SOURCEDIR_ARCHIVE).read_bytes() == (
        stage_code_bundle(tmp_path / "twice", custom_scripts=[script]).directory / SOURCEDIR_ARCHIVE
    ).read_bytes()


def test_two_scripts_with_one_name_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.py").write_text(folder)
    with pytest.raises(ValueError, match=r"would both be custom/train\.py in the code bundle"):
        stage_code_bundle(tmp_path / "out", custom_scripts=[tmp_path / "a" / "train.py", tmp_path / "b" / "train.py"])


def test_the_readme_shows_the_example_as_it_is() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```\n" in readme
    assert len(EXAMPLE.read_text().splitlines()) <= 30


def test_the_local_runner_runs_train_custom_as_a_training_job(splits: Path, tmp_path: Path) -> None:
    """A Training step as the definition's CustomTrain gives it (script mode: the SDK's JSON-quoted
    sagemaker_* hyperparameters, the bundle's sourcedir.tar.gz, metric definitions derived from the
    contract), run by `sagelab run`'s interpreter: the job's model.tar.gz is a servable joblib model."""
    from sagelab.local.runner import LocalPipelineRunner, LocalS3
    from sagelab.pipeline_definition import metric_regex

    s3 = LocalS3(tmp_path / "work" / "s3")
    bundle = stage_code_bundle(tmp_path / "bundle", custom_scripts=[EXAMPLE])
    s3.upload(bundle.directory, "s3://artifacts/pipeline-code/v1")
    s3.upload(splits, "s3://data/splits")
    arguments = {
        "AlgorithmSpecification": {
            "TrainingImage": "local/sagemaker-scikit-learn:1.4-2",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:accuracy", "Regex": metric_regex("accuracy")}],
        },
        "HyperParameters": {
            USER_SCRIPT_HYPERPARAMETER: '"custom/custom_train.py"',
            "regularization": "0.5",
            "sagemaker_program": '"train_custom.py"',
            "sagemaker_submit_directory": '"s3://artifacts/pipeline-code/v1/sourcedir.tar.gz"',
        },
        "InputDataConfig": [
            {"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://data/splits/{name}/"}}}
            for name in ("train", "validation", "spec")
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://artifacts/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "RoleArn": "arn:aws:iam::000000000000:role/r",
    }
    lines: list[str] = []
    runner = LocalPipelineRunner({"Steps": [{"Name": "CustomTrain", "Type": "Training", "Arguments": arguments}]}, tmp_path / "work", log=lines.append)
    result = runner.run({})
    assert result.status == "Succeeded", (result.failure_reason, lines[-20:])
    (model_tar,) = (tmp_path / "work/s3/artifacts/models").glob("*/output/model.tar.gz")
    served = tmp_path / "served"
    with tarfile.open(model_tar) as archive:
        archive.extractall(served, filter="data")
    model = inference.model_fn(served)
    assert model.estimator is not None and (served / "code" / "inference.py").is_file()
    assert any(re.search(metric_regex("accuracy"), line) for line in lines)
