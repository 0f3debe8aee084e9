"""The scheduled drift check on AWS (decision 0013), proven on the synthesized templates and by
running its Lambda package against moto:

- who may touch captured requests, with IAM's semantics (tests/iam_policy.py): the check's role reads
  only the front door's capture, ground truth and baselines, writes only reports, publishes only its
  namespace; the front door writes only the capture; the student's notebook reads none of it. Each
  with a planted statement that the same property rejects (the negative case);
- the schedule, alarms to the environment's topic and the dashboard, per config, for a serverless
  environment (the classroom default) and a real-time one, and off for a class's student unless asked;
- the package is runtime/ filtered to the check's modules and the capture format, and it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stacks.drift_check.runtime import comparison
from stacks.front_door.runtime import capture
from tests.conftest import SynthResult, synth
from tests.iam_policy import Env, Stacks, Statement, is_allowed

ENV = Env(partition="aws", region="us-east-1", account="123456789012")
CONFIG = """\
environments:
  dev:
    serving: {mode: serverless, drift_check_interval_hours: 6, drift_threshold: 0.3}
  student:
    serving: {monitoring: class}
  asked:
    serving: {monitoring: class, drift_check: "on"}
"""


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    directory = tmp_path_factory.mktemp("drift-environments")
    (directory / "drift.yaml").write_text(CONFIG)
    return synth(directory / "cdk.out", {"config": str(directory / "drift.yaml")})  # cdk-nag runs: a finding raises


def _role_statements(result: SynthResult, stack: str, prefix: str) -> list[Statement]:
    stacks = Stacks(result.templates, ENV)
    (role,) = [r for r in stacks.roles() if r.stack == stack and r.logical_id.startswith(prefix)]
    return stacks.identity_policies(role)


def _artifacts(result: SynthResult, environment: str = "dev") -> str:
    stacks = Stacks(result.templates, ENV)
    (logical_id,) = [
        k
        for k, v in result.templates[f"sagelab-{environment}--platform"]["Resources"].items()
        if k.startswith("StorageArtifacts") and v["Type"] == "AWS::S3::Bucket"
    ]
    return stacks.stand_in(f"sagelab-{environment}--platform", logical_id, "Arn")


# -- reach ------------------------------------------------------------------------------------------
CAPTURED = "data-capture/front-door/2026/12/06/13/0501-1f2e3d4c.json"
ALLOWED_READS = (
    CAPTURED,
    "data-capture/ground-truth/labels-2026-12-06.csv",
    "models/evaluations/exec-1/evaluation/statistics.json",
    "models/evaluations/exec-1/evaluation/constraints.json",
    "models/evaluations/exec-1/evaluation/prediction_statistics.json",
    "models/evaluations/exec-1/evaluation/evaluation.json",
)
DENIED_READS = (
    "data-capture/AllTraffic/2026/01/01/00/capture.jsonl",  # the endpoint's own capture: not the check's input
    "models/sagelab-dev--train-a1b2/output/model.tar.gz",
    "models/evaluations/exec-1/evaluation/confusion_matrix.png",
    "pipeline-runs/exec-1/preprocess/train/features.npy",
    "pipeline-code/v1/evaluate.py",
    "anything-else",
)
REPORT = "data-capture/reports/2026/12/06/130000/report.json"


def monitor_overreach(statements: list[Statement], artifacts: str, data_bucket: str) -> list[str]:
    """What the check's role may do beyond reading capture/labels/baselines, writing reports and
    publishing its metrics (empty when least privilege holds)."""
    found = []
    for key in DENIED_READS:
        if is_allowed(statements, "s3:GetObject", f"{artifacts}/{key}"):
            found.append(f"GetObject {key}")
    if is_allowed(statements, "s3:GetObject", f"{data_bucket}/train.csv"):
        found.append("GetObject in the data bucket")
    for key in (CAPTURED, "models/evaluations/exec-1/evaluation/statistics.json", "data-capture/ground-truth/x.csv", "anything-else"):
        for action in ("s3:PutObject", "s3:DeleteObject"):
            if is_allowed(statements, action, f"{artifacts}/{key}"):
                found.append(f"{action} {key}")
    if is_allowed(statements, "s3:ListBucket", artifacts, {"s3:prefix": "models/"}):
        found.append("ListBucket models/")
    if is_allowed(statements, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/SageMaker"}):
        found.append("PutMetricData AWS/SageMaker")
    return found


def test_the_checks_role_reads_only_capture_and_baselines_and_writes_only_reports(synthesized: SynthResult) -> None:
    statements = _role_statements(synthesized, "sagelab-dev--serving", "DriftCheckRole")
    artifacts = _artifacts(synthesized)
    stacks = Stacks(synthesized.templates, ENV)
    (data_id,) = [
        k for k, v in synthesized.templates["sagelab-dev--platform"]["Resources"].items() if k.startswith("StorageData") and v["Type"] == "AWS::S3::Bucket"
    ]
    data_bucket = stacks.stand_in("sagelab-dev--platform", data_id, "Arn")
    for key in ALLOWED_READS:
        assert is_allowed(statements, "s3:GetObject", f"{artifacts}/{key}"), key
    assert is_allowed(statements, "s3:PutObject", f"{artifacts}/{REPORT}")
    assert is_allowed(statements, "s3:ListBucket", artifacts, {"s3:prefix": "data-capture/front-door/2026/12/06/13/"})
    assert is_allowed(statements, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "SageLab/DriftCheck"})
    assert monitor_overreach(statements, artifacts, data_bucket) == []
    # The negative case: the same property catches a role that may read the whole bucket.
    planted = [*statements, Statement(effect="Allow", actions=("s3:GetObject",), resources=(f"{artifacts}/*",), source="planted")]
    assert "GetObject models/sagelab-dev--train-a1b2/output/model.tar.gz" in monitor_overreach(planted, artifacts, data_bucket)
    planted = [*statements, Statement(effect="Allow", actions=("s3:PutObject",), resources=(f"{artifacts}/data-capture/*",), source="planted")]
    assert f"s3:PutObject {CAPTURED}" in monitor_overreach(planted, artifacts, data_bucket)


def test_the_front_door_writes_captured_requests_and_nothing_else(synthesized: SynthResult) -> None:
    statements = _role_statements(synthesized, "sagelab-dev--serving", "FrontDoorFunctionRole")
    artifacts = _artifacts(synthesized)
    assert is_allowed(statements, "s3:PutObject", f"{artifacts}/{CAPTURED}")
    for key in (REPORT, "data-capture/ground-truth/x.csv", "models/evaluations/exec-1/evaluation/statistics.json", "anything-else"):
        assert not is_allowed(statements, "s3:PutObject", f"{artifacts}/{key}"), key
    assert not is_allowed(statements, "s3:GetObject", f"{artifacts}/{CAPTURED}"), "the front door writes captures, it never reads them back"


def test_the_student_notebook_reads_no_capture_report_or_ground_truth(synthesized: SynthResult) -> None:
    statements = _role_statements(synthesized, "sagelab-dev--platform", "RolesNotebookRole")
    artifacts = _artifacts(synthesized)
    for key in (CAPTURED, REPORT, "data-capture/reports/2026/12/06/130000/drift.png", "data-capture/ground-truth/labels.csv"):
        assert not is_allowed(statements, "s3:GetObject", f"{artifacts}/{key}"), key
    # The negative case: the notebook does read the evaluation folder, so the Deny is what stops it.
    without_deny = [s for s in statements if s.effect != "Deny"]
    assert is_allowed(without_deny, "s3:GetObject", f"{artifacts}/{CAPTURED}")


# -- per config -------------------------------------------------------------------------------------
def _of_type(result: SynthResult, stack: str, resource_type: str) -> dict[str, dict[str, Any]]:
    return result.resources(stack, resource_type)


def test_a_serverless_environment_is_checked_on_its_schedule_and_alarms_reach_its_topic(environments: SynthResult) -> None:
    serving = "sagelab-dev--serving"
    (config,) = _of_type(environments, serving, "AWS::SageMaker::EndpointConfig").values()
    assert "ServerlessConfig" in json.dumps(config) and "DataCaptureConfig" not in config["Properties"], "serverless endpoints cannot capture"
    (rule,) = [r for r in _of_type(environments, serving, "AWS::Events::Rule").values() if "drift check" in r["Properties"].get("Description", "")]
    assert rule["Properties"]["ScheduleExpression"] == "rate(6 hours)"
    functions = _of_type(environments, serving, "AWS::Lambda::Function")
    (check,) = [f for k, f in functions.items() if k.startswith("DriftCheckFunction")]
    assert check["Properties"]["Environment"]["Variables"]["DRIFT_THRESHOLD"] == "0.3"
    assert check["Properties"]["Environment"]["Variables"]["MODEL_DESCRIPTION_URI"] == {"Ref": "ModelDescriptionUri"}
    (front_door,) = [f for k, f in functions.items() if k.startswith("FrontDoorFunction")]
    assert front_door["Properties"]["Environment"]["Variables"]["DATA_CAPTURE_PERCENT"] == "10"
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in _of_type(environments, serving, "AWS::CloudWatch::Alarm").values()}
    (topic_id,) = _of_type(environments, serving, "AWS::SNS::Topic")
    for name, threshold in (("sagelab-dev--DriftViolations", 1), ("sagelab-dev--FeatureDrift", 0.3)):
        assert alarms[name]["Threshold"] == threshold and alarms[name]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarms[name]["Namespace"] == "SageLab/DriftCheck" and alarms[name]["Period"] == 6 * 3600
    (dashboard,) = _of_type(environments, serving, "AWS::CloudWatch::Dashboard").values()
    assert "Drift check" in json.dumps(dashboard["Properties"]["DashboardBody"])


def test_a_real_time_environment_is_checked_too(synthesized: SynthResult) -> None:
    functions = _of_type(synthesized, "sagelab-dev--serving", "AWS::Lambda::Function")
    assert any(k.startswith("DriftCheckFunction") for k in functions)
    (config,) = _of_type(synthesized, "sagelab-dev--serving", "AWS::SageMaker::EndpointConfig").values()
    assert "ProductionVariants" in config["Properties"] and "ServerlessConfig" not in json.dumps(config)


def test_a_class_students_environment_has_no_check_unless_asked(environments: SynthResult) -> None:
    def checked(environment: str) -> bool:
        return any(k.startswith("DriftCheckFunction") for k in _of_type(environments, f"sagelab-{environment}--serving", "AWS::Lambda::Function"))

    assert not checked("student") and checked("asked")


# -- the package, run ---------------------------------------------------------------------------------
def _package(result: SynthResult) -> Path:
    functions = _of_type(result, "sagelab-dev--serving", "AWS::Lambda::Function")
    (check,) = [f for k, f in functions.items() if k.startswith("DriftCheckFunction")]
    return result.outdir / f"asset.{check['Properties']['Code']['S3Key'].removesuffix('.zip')}"


def test_the_package_holds_the_check_and_the_capture_format_only(synthesized: SynthResult) -> None:
    package = _package(synthesized)
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert files == ["contract.py", "front_door/capture.py", "monitor/__init__.py", "monitor/comparison.py", "monitor/handler.py", "monitor/plot.py"]
    probe = "import monitor.handler as h; print(h.comparison.__file__, h.capture.__file__, h.contract.__file__)"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=package, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert all(path.startswith(str(package)) for path in completed.stdout.split())


def _baseline_files() -> dict[str, Any]:
    buckets = [{"lower_bound": float(i), "upper_bound": float(i + 1), "count": 100} for i in range(10)]
    features = [
        {
            "name": name,
            "inferred_type": "Fractional",
            "numerical_statistics": {"common": {"num_present": 1000, "num_missing": 0}, "distribution": {"kll": {"buckets": buckets}}},
        }
        for name in ("a", "b")
    ]
    constraints = {"features": [{"name": n, "inferred_type": "Fractional", "completeness": 1.0} for n in ("a", "b")], "monitoring_config": {}}
    return {comparison.STATISTICS_FILE_NAME: {"features": features}, comparison.CONSTRAINTS_FILE_NAME: constraints}


def test_the_handler_reports_and_publishes_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    import boto3
    from moto import mock_aws

    from stacks.drift_check.runtime import handler

    now = datetime(2026, 12, 6, 13, 30, tzinfo=UTC)
    folder = "models/evaluations/exec-1/evaluation"
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_CLOUDWATCH"):  # set by other tests' local front door
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setattr(handler, "_clients", {})
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="artifacts")
        for name, document in _baseline_files().items():
            s3.put_object(Bucket="artifacts", Key=f"{folder}/{name}", Body=json.dumps(document).encode())
        draw = random.Random(0)
        for number in range(40):
            rows = [{"a": draw.uniform(0, 10), "b": draw.uniform(0, 10) + 6} for _ in range(10)]  # b moved up
            record = capture.capture_record(f"id-{number}", json.dumps({"instances": rows}), 200, json.dumps({"predictions": [{"value": 1.0}] * 10}), now)
            s3.put_object(Bucket="artifacts", Key=capture.capture_key(f"id-{number}", now - timedelta(minutes=10)), Body=json.dumps(record).encode())
        old = capture.capture_record("old", json.dumps({"instances": [{"a": "x"}]}), 200, "{}", now)
        s3.put_object(Bucket="artifacts", Key=capture.capture_key("old", now - timedelta(hours=3)), Body=json.dumps(old).encode())  # outside the window
        for key, value in {
            "ARTIFACTS_BUCKET": "artifacts",
            "ENDPOINT_NAME": "sagelab-dev--endpoint",
            "MODEL_DESCRIPTION_URI": f"s3://artifacts/{folder}/model_description.json",
            "METRIC_NAMESPACE": "SageLab/DriftCheck",
            "WINDOW_HOURS": "1",
        }.items():
            monkeypatch.setenv(key, value)
        outcome = handler.run(now)
        assert outcome["status"] == "checked" and outcome["rows"] == 400
        report = json.loads(s3.get_object(Bucket="artifacts", Key=outcome["report"])["Body"].read())
        assert {(v["feature"], v["check"]) for v in report["violations"]} == {("b", "baseline_drift_check")}
        plot = s3.get_object(Bucket="artifacts", Key=outcome["report"].replace(comparison.REPORT_FILE_NAME, comparison.PLOT_FILE_NAME))["Body"].read()
        assert plot.startswith(b"\x89PNG")
        metrics = boto3.client("cloudwatch").list_metrics(Namespace="SageLab/DriftCheck")["Metrics"]
        names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
        assert ("Violations", (("Endpoint", "sagelab-dev--endpoint"),)) in names
        assert ("FeatureDrift", (("Endpoint", "sagelab-dev--endpoint"), ("Feature", "b"))) in names
        monkeypatch.setenv("MODEL_DESCRIPTION_URI", "")
        assert handler.run(now) == {"status": "no-model"}
