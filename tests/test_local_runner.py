"""The local runner on small hand-written definitions: ordering, each step type, failures, caching."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sagelab.local.expressions import UnsupportedExpression
from sagelab.local.runner import LocalPipelineRunner, PipelineError, dependency_order, flatten_steps

REPO_ROOT = Path(__file__).resolve().parent.parent
SCORE_SCRIPT = """
import argparse, json, os, pathlib, sys
parser = argparse.ArgumentParser()
parser.add_argument("--input"); parser.add_argument("--output"); parser.add_argument("--score", type=float); parser.add_argument("--fail", default="no")
args = parser.parse_args()
rows = sum(1 for p in pathlib.Path(args.input).rglob("*") if p.is_file())
print(f"read {rows} file(s); GREETING={os.environ.get('GREETING')}")
if args.fail == "yes":
    print("about to fail", flush=True)
    sys.exit(3)
pathlib.Path(args.output).mkdir(parents=True, exist_ok=True)
(pathlib.Path(args.output) / "report.json").write_text(json.dumps({"metrics": {"score": args.score}, "rows": rows}))
"""

TRAIN_SCRIPT = """
import argparse, json, os, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--depth", type=int); parser.add_argument("--rate", type=float)
args, _ = parser.parse_known_args()
channel = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
assert json.loads(os.environ["SM_HPS"])["depth"] == args.depth
score = 1.0 / (1 + abs(args.depth - 4)) + args.rate / 100
print(f"validation-score={score:.4f}")
(pathlib.Path(os.environ["SM_MODEL_DIR"]) / "model.json").write_text(json.dumps({"depth": args.depth, "files": sorted(p.name for p in channel.iterdir())}))
"""


def seed(workdir: Path) -> None:
    s3 = workdir / "s3" / "bucket"
    (s3 / "code").mkdir(parents=True)
    (s3 / "code" / "score.py").write_text(SCORE_SCRIPT)
    (s3 / "data").mkdir()
    (s3 / "data" / "a.csv").write_text("x\n1\n")
    (s3 / "data" / "b.csv").write_text("x\n2\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = TRAIN_SCRIPT.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (s3 / "code" / "sourcedir.tar.gz").write_bytes(buffer.getvalue())


def get(reference: str) -> dict[str, str]:
    return {"Get": reference}


def processing_step(name: str, score: Any, fail: Any = "no", cache: bool = False) -> dict[str, Any]:
    step: dict[str, Any] = {
        "Name": name,
        "Type": "Processing",
        "Arguments": {
            "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}},
            "AppSpecification": {
                "ImageUri": "local/image",
                "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/score.py"],
                "ContainerArguments": ["--input", "/opt/ml/processing/input/data", "--output", "/opt/ml/processing/report", "--score", score, "--fail", fail],
            },
            "Environment": {"GREETING": "hello"},
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "ProcessingInputs": [
                {
                    "InputName": "data",
                    "S3Input": {
                        "S3Uri": get("Parameters.InputUri"),
                        "LocalPath": "/opt/ml/processing/input/data",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                },
                {
                    "InputName": "code",
                    "S3Input": {
                        "S3Uri": "s3://bucket/code/score.py",
                        "LocalPath": "/opt/ml/processing/input/code",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                },
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "report",
                        "S3Output": {
                            "S3Uri": {"Std:Join": {"On": "/", "Values": ["s3://bucket/runs", get("Execution.PipelineExecutionId"), name]}},
                            "LocalPath": "/opt/ml/processing/report",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
        },
        "PropertyFiles": [{"PropertyFileName": "Report", "OutputName": "report", "FilePath": "report.json"}],
    }
    if cache:
        step["CacheConfig"] = {"Enabled": True, "ExpireAfter": "PT1H"}
    return step


def definition(
    score: Any = 0.9, condition_type: str = "GreaterThanOrEqualTo", extra_steps: list[dict[str, Any]] | None = None, fail: Any = "no"
) -> dict[str, Any]:
    metric = {"Std:JsonGet": {"PropertyFile": get("Steps.Score.PropertyFiles.Report"), "Path": "metrics.score"}}
    return {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "InputUri", "Type": "String", "DefaultValue": "s3://bucket/data/"},
            {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.8},
            {"Name": "Mode", "Type": "String", "DefaultValue": "fast", "EnumValues": ["fast", "slow"]},
        ],
        "Steps": [
            *(extra_steps or []),
            processing_step("Score", score, fail=fail, cache=True),
            {
                "Name": "Check",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [{"Type": condition_type, "LeftValue": metric, "RightValue": get("Parameters.Threshold")}],
                    "IfSteps": [processing_step("Publish", score=metric)],
                    "ElseSteps": [
                        {
                            "Name": "TooLow",
                            "Type": "Fail",
                            "Arguments": {"ErrorMessage": {"Std:Join": {"On": "", "Values": ["score ", metric, " below ", get("Parameters.Threshold")]}}},
                        }
                    ],
                },
            },
        ],
    }


def run(
    tmp_path: Path, spec: dict[str, Any], params: dict[str, str] | None = None, resume: bool = False, fresh_processes: bool = False
) -> tuple[Any, list[str]]:
    lines: list[str] = []
    runner = LocalPipelineRunner(spec, tmp_path, log=lines.append, fresh_processes=fresh_processes)
    return runner.run(params or {}, resume=resume), lines


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    seed(tmp_path)
    return tmp_path


@pytest.mark.parametrize("fresh_processes", [False, True], ids=["forked", "fresh-interpreter"])
def test_processing_condition_and_if_branch(workdir: Path, fresh_processes: bool) -> None:
    result, lines = run(workdir, definition(score=0.9), fresh_processes=fresh_processes)
    assert result.status == "Succeeded"
    statuses = {s.name: s.status for s in result.steps}
    assert statuses == {"Score": "Succeeded", "Check": "Succeeded", "Publish": "Succeeded", "TooLow": "Skipped"}
    report = json.loads((workdir / "s3/bucket/runs" / result.execution_id / "Score" / "report.json").read_text())
    assert report == {"metrics": {"score": 0.9}, "rows": 2}
    assert any("[Score] read 2 file(s); GREETING=hello" in line for line in lines)
    assert result.metric == {"metric": None, "value": 0.9, "threshold": 0.8, "comparison": "GreaterThanOrEqualTo", "message": None, "result": True}


def test_fail_step_message_and_skipped_branch(workdir: Path) -> None:
    result, lines = run(workdir, definition(score=0.5))
    assert result.status == "Failed"
    assert result.failure_reason == "score 0.5 below 0.8"
    assert {s.name: s.status for s in result.steps}["Publish"] == "Skipped"
    assert any("TooLow (Fail): score 0.5 below 0.8" in line for line in lines)


def test_parameter_override_is_type_checked(workdir: Path) -> None:
    result, _ = run(workdir, definition(score=0.85), {"Threshold": "0.86"})
    assert result.status == "Failed"
    with pytest.raises(PipelineError, match="parameter Threshold is Float; 'high' is not a valid float"):
        run(workdir, definition(), {"Threshold": "high"})
    with pytest.raises(PipelineError, match="parameter Mode must be one of fast, slow"):
        run(workdir, definition(), {"Mode": "medium"})
    with pytest.raises(PipelineError, match=r"unknown parameter\(s\) \['Bogus'\]"):
        run(workdir, definition(), {"Bogus": "1"})


@pytest.mark.parametrize("fresh_processes", [False, True], ids=["forked", "fresh-interpreter"])
def test_failing_script_shows_exit_code_and_log_tail_and_stops(workdir: Path, fresh_processes: bool) -> None:
    result, lines = run(workdir, definition(fail="yes"), fresh_processes=fresh_processes)
    assert result.status == "Failed"
    assert result.failure_reason == "Score: score.py exited with code 3"
    assert [s.status for s in result.steps] == ["Failed", "NotStarted", "NotStarted", "NotStarted"]
    assert "   | about to fail" in lines


def test_missing_input_is_named(workdir: Path) -> None:
    result, _ = run(workdir, definition(), {"InputUri": "s3://bucket/nothing-here/"})
    assert result.status == "Failed"
    assert "input 'data': s3://bucket/nothing-here/ has no objects" in (result.failure_reason or "")


def test_unsupported_step_type_is_named_with_its_step(workdir: Path) -> None:
    spec = definition(extra_steps=[{"Name": "Ask", "Type": "Lambda", "Arguments": {}}])
    with pytest.raises(UnsupportedExpression, match="step Ask: step type 'Lambda' is not supported"):
        run(workdir, spec)


def test_unsupported_expression_fails_its_step(workdir: Path) -> None:
    spec = definition(score={"Std:Frobnicate": {"Values": []}})
    result, _ = run(workdir, spec)
    assert result.failure_reason == "Score: expression 'Std:Frobnicate' is not supported by the local runner"


def test_depends_on_and_data_dependencies_order_steps() -> None:
    spec = definition(extra_steps=[{**processing_step("Late", 1.0), "DependsOn": ["Score"]}])
    # Late comes first in the definition but waits for Score; branch steps follow their condition.
    assert dependency_order(flatten_steps(spec)) == ["Score", "Late", "Check", "Publish", "TooLow"]
    cyclic = {"Steps": [{**processing_step("A", 1.0), "DependsOn": ["B"]}, {**processing_step("B", 1.0), "DependsOn": ["A"]}]}
    with pytest.raises(PipelineError, match="dependency cycle"):
        dependency_order(flatten_steps(cyclic))


def test_resume_reuses_cached_steps_until_inputs_change(workdir: Path) -> None:
    first, _ = run(workdir, definition(score=0.9))
    second, lines = run(workdir, definition(score=0.9), resume=True)
    assert {s.name: s.status for s in second.steps}["Score"] == "Cached"
    assert second.status == "Succeeded" and any("reused from an earlier run" in line for line in lines)
    # The reused step's log is the run's that computed it, and its outputs are that run's.
    first_log = Path(first.execution_dir) / "logs" / "Score.log"
    assert (Path(second.execution_dir) / "logs" / "Score.log").read_text() == f"(reused from an earlier run: {first_log})\n{first_log.read_text()}"
    first_outputs = next(step["outputs"] for step in first.to_json()["steps"] if step["name"] == "Score")
    assert next(step["outputs"] for step in second.to_json()["steps"] if step["name"] == "Score") == first_outputs
    assert list(first_outputs) == ["report"] and first.execution_id in first_outputs["report"]
    (workdir / "s3/bucket/data/c.csv").write_text("x\n3\n")
    third, _ = run(workdir, definition(score=0.9), resume=True)
    assert {s.name: s.status for s in third.steps}["Score"] == "Succeeded"
    without, _ = run(workdir, definition(score=0.9))
    assert {s.name: s.status for s in without.steps}["Score"] == "Succeeded"
    assert first.execution_id != second.execution_id


def training_arguments() -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": "local/xgb",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:score", "Regex": "validation-score=([0-9.]+)"}],
        },
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models"},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/data/"}}}],
        "RoleArn": "arn:aws:iam::000000000000:role/r",
    }


def test_training_step_follows_the_sagemaker_contract(workdir: Path) -> None:
    arguments = {
        **training_arguments(),
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "HyperParameters": {
            "depth": {"Std:Join": {"On": "", "Values": [get("Parameters.Depth")]}},
            "rate": "1.5",
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"',
        },
    }
    spec = {"Parameters": [{"Name": "Depth", "Type": "Integer", "DefaultValue": 3}], "Steps": [{"Name": "Train", "Type": "Training", "Arguments": arguments}]}
    result, lines = run(workdir, spec, {"Depth": "4"})
    assert result.status == "Succeeded", result.failure_reason
    (model_tar,) = (workdir / "s3/bucket/models").glob("*/output/model.tar.gz")
    with tarfile.open(model_tar) as tar:
        assert json.loads(tar.extractfile("model.json").read()) == {"depth": 4, "files": ["a.csv", "b.csv"]}  # type: ignore[union-attr]
    assert any("validation-score=1.0150" in line for line in lines)


def test_tuning_step_searches_and_ranks_by_the_objective(workdir: Path) -> None:
    arguments = {
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 10, "MaxParallelTrainingJobs": 2},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:score"},
            "ParameterRanges": {
                "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "8"}],
                "ContinuousParameterRanges": [{"Name": "rate", "MinValue": "0.1", "MaxValue": "0.5"}],
            },
        },
        "TrainingJobDefinition": {
            **training_arguments(),
            "StaticHyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"'},
            "HyperParameterTuningResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        },
    }
    spec = {"Steps": [{"Name": "Tune", "Type": "Tuning", "Arguments": arguments}]}
    lines: list[str] = []
    runner = LocalPipelineRunner(spec, workdir, log=lines.append, max_tuning_jobs=3)
    result = runner.run({})
    assert result.status == "Succeeded", result.failure_reason
    jobs = [line for line in lines if "-> validation:score=" in line]
    assert len(jobs) == 3
    assert any("job 1/3 {'depth': '4', 'rate': '0.3'}" in line for line in lines), "the first candidate is the midpoint"
    assert len(list((workdir / "s3/bucket/models").glob("*/output/model.tar.gz"))) == 3


def test_forked_step_sees_only_its_own_folder_and_environment(workdir: Path) -> None:
    probe = (
        "import importlib.machinery, os, sys\n"
        "print('PATH0', sys.path[0])\n"
        "print('SITE_PACKAGES_ON_PATH', importlib.machinery.PathFinder.find_spec('numpy') is not None)\n"
        f"print('REPO_ON_PATH', any(p in ({str(REPO_ROOT)!r}, os.getcwd()) for p in sys.path[1:]))\n"
        "print('CWD', os.getcwd())\n"
        "print('GREETING', os.environ.get('GREETING'))\n"
        "sys.exit(4)\n"
    )
    (workdir / "s3/bucket/code/score.py").write_text(probe)
    result, lines = run(workdir, definition())
    assert result.failure_reason == "Score: score.py exited with code 4"
    text = "\n".join(lines)
    assert "PATH0 " + str(workdir) in text and "/container/opt/ml/processing/input/code" in text
    assert "REPO_ON_PATH False" in text
    assert "SITE_PACKAGES_ON_PATH True" in text  # a venv inside the checkout is still site-packages
    assert "GREETING hello" in text
