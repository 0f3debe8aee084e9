"""The lab: the notebook instance on the template, the idle auto-stop decision, and the lab
notebook executed headless in local mode."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from sagelab.code_bundle import LAB_FILES, stage_code_bundle
from stacks.notebook_environment.runtime.idle_stop import is_idle
from tests.conftest import SynthResult, TrainedRun

REPO_ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}


def resolved(value: Any) -> Any:
    """A policy resource with CloudFormation's pseudo parameters filled in (Ref, Fn::Join, lists);
    anything else fails the test, so a scope cannot hide behind an unresolved intrinsic."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolved(item) for item in value]
    if set(value) == {"Ref"} and value["Ref"] in PSEUDO:
        return PSEUDO[value["Ref"]]
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(resolved(part) for part in parts)
    raise AssertionError(f"cannot resolve {value!r}")


def test_notebook_instance_is_encrypted_rootless_and_uses_its_role(platform_template: dict[str, Any]) -> None:
    (instance,) = of_type(platform_template, "AWS::SageMaker::NotebookInstance").values()
    props = instance["Properties"]
    assert props["NotebookInstanceName"] == "sagelab-dev--notebook"
    assert props["InstanceType"] == "ml.t3.medium" and props["VolumeSizeInGB"] == 10
    assert props["RootAccess"] == "Disabled" and props["DirectInternetAccess"] == "Enabled"
    key_id = next(iter(of_type(platform_template, "AWS::KMS::Key")))
    assert props["KmsKeyId"] == {"Ref": key_id}
    assert props["RoleArn"]["Fn::GetAtt"][0].startswith("RolesNotebookRole")
    assert props["LifecycleConfigName"]["Fn::GetAtt"][0].startswith("NotebookLifecycle")


def test_lifecycle_copies_the_lab_from_s3_and_installs_idle_stop(platform_template: dict[str, Any]) -> None:
    (lifecycle,) = of_type(platform_template, "AWS::SageMaker::NotebookInstanceLifecycleConfig").values()
    content = lifecycle["Properties"]["OnStart"][0]["Content"]["Fn::Base64"]
    script = json.dumps(content)
    assert "aws s3 cp --recursive" in script and "/lab/" in script
    assert "sagelab-idle-stop.py --idle-minutes 60" in script
    assert "curl" not in script and "pip install" not in script, "nothing is downloaded at boot"


def test_notebook_role_can_run_the_lab_and_stop_itself(platform_template: dict[str, Any]) -> None:
    role_id = next(k for k in of_type(platform_template, "AWS::IAM::Role") if k.startswith("RolesNotebookRole"))
    statements = [
        s
        for p in of_type(platform_template, "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p["Properties"].get("Roles", [])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert "sagemaker:StartPipelineExecution" in by_sid["OperateThePipeline"]["Action"]
    assert resolved(by_sid["OperateThePipeline"]["Resource"]) == "arn:aws:sagemaker:us-east-1:123456789012:pipeline/sagelab-dev--pipeline"
    assert "sagemaker:StopNotebookInstance" in by_sid["StopWhenIdle"]["Action"]
    assert resolved(by_sid["StopWhenIdle"]["Resource"]) == "arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/sagelab-dev--notebook"
    assert by_sid["CallTheEndpoint"]["Action"] == "sagemaker:InvokeEndpoint"


def test_platform_outputs_the_notebook(synthesized: SynthResult) -> None:
    outputs = synthesized.template("sagelab-dev--platform")["Outputs"]
    assert outputs["NotebookName"]["Value"] == "sagelab-dev--notebook"
    assert "sagemaker_lab.ipynb" in json.dumps(outputs["NotebookUrl"]["Value"])


def test_lab_bundle_carries_notebook_idle_stop_and_packages(tmp_path: Path) -> None:
    bundle = stage_code_bundle(tmp_path / "code")
    lab = bundle.directory / "lab"
    for relative in ("sagemaker_lab.ipynb", "idle_stop.py", "sagelab/lab.py", "sagelab/aws_ops.py", "pipeline_steps/train.py"):
        assert (lab / relative).is_file(), relative


@pytest.mark.parametrize(
    ("sessions", "terminals", "started", "expected"),
    [
        ([], [], NOW - dt.timedelta(minutes=90), True),
        ([], [], NOW - dt.timedelta(minutes=10), False),
        ([], [], None, False),
        ([{"kernel": {"execution_state": "busy", "last_activity": "2026-11-24T09:00:00Z"}}], [], None, False),
        ([{"kernel": {"execution_state": "idle", "last_activity": "2026-11-24T10:30:00Z"}}], [], None, True),
        ([{"kernel": {"execution_state": "idle", "last_activity": "2026-11-24T11:30:00Z"}}], [], None, False),
        ([{"kernel": {"execution_state": "idle", "last_activity": "2026-11-24T09:00:00Z"}}], [{"last_activity": "2026-11-24T11:55:00.123Z"}], None, False),
    ],
    ids=["never-used-long", "never-used-recent", "no-evidence", "busy-kernel", "idle-kernel", "recent-kernel", "recent-terminal"],
)
def test_idle_decision(sessions: list[dict[str, Any]], terminals: list[dict[str, Any]], started: dt.datetime | None, expected: bool) -> None:
    assert is_idle(sessions, terminals, NOW, idle_minutes=60, started=started) is expected


@pytest.mark.slow  # the lab notebook executed headless (a kernel, an AutoML search, batch, drift)
def test_lab_notebook_runs_top_to_bottom_in_local_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_run: TrainedRun) -> None:
    """In a copy of the session's trained work directory: the lab's first run (default
    hyperparameters) reuses the cached preprocess and training steps, as a re-run on AWS would."""
    monkeypatch.setenv("SAGELAB_MODE", "local")
    # The section comparing algorithms runs a local Autopilot search. The search's budget only stops new
    # candidates from starting, so a budget this short runs exactly one (the cheapest, k-nearest
    # neighbours, 0.97 on the digits): the claim here is the notebook's cells, not the search, whose
    # several candidates, ensemble and leaderboard test_algorithms and test_local_automl prove (4 s
    # ran three to four candidates and the refit of their ensemble, 5 s of this test's CPU).
    monkeypatch.setenv("SAGELAB_AUTOML_BUDGET_S", "0.001")
    shutil.copytree(trained_run.workdir, tmp_path / ".sagelab", symlinks=True)
    notebook = nbformat.read(LAB_FILES["sagemaker_lab.ipynb"], as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "mode: local" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5, "the digits figure, the confusion matrix, the ROC curves, the algorithms compared and the drift plot"
    assert "normal rows: no violation" in text
    drifted = {line.split()[1] for line in text.splitlines() if line.startswith("violation ") and "baseline_drift_check" in line}
    assert drifted == {"pixel_20", "pixel_36", "pixel_43"}
    compared = {line.split()[1].rstrip(":"): line.split(maxsplit=2)[2] for line in text.splitlines() if line.startswith("algorithm ") and ": " in line}
    assert set(compared) == {"xgboost", "kmeans", "autopilot"}
    assert compared["kmeans"].startswith("Succeeded, silhouette ") and compared["kmeans"].endswith("(passed the gate)")
    assert compared["autopilot"].startswith("Succeeded, accuracy ") and float(compared["autopilot"].split()[2]) >= 0.9
    metrics_line = next(line for line in text.splitlines() if line.startswith("{'accuracy'"))
    assert float(metrics_line.split("'accuracy': ")[1].split(",")[0]) >= 0.95
    truth = next(line for line in text.splitlines() if line.startswith("truth"))
    api = next(line for line in text.splitlines() if line.startswith("API"))
    assert len(api.split("[")[1].split(",")) == 5 and truth and "'" in api
    assert "'mean'" in text and "'std'" in text
    batch = next(line for line in text.splitlines() if line.startswith("batch accuracy on 20 rows:"))
    assert float(batch.rsplit(" ", 1)[1]) >= 0.9
    wine = next(line for line in text.splitlines() if line.startswith("wine:"))
    assert wine.startswith("wine: Succeeded, test accuracy ") and float(wine.rsplit(" ", 1)[1]) >= 0.9
    assert (tmp_path / "predictions.csv").is_file()
    assert "(reused from an earlier run: " in text, "the training log of the reused step is the original run's"
    assert "Cached" in text
    assert (tmp_path / ".sagelab" / "registry").is_dir()
