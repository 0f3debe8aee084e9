"""`sagelab run` end to end on the real definition, as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_step_scripts import messy_frame

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def sagelab(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sagelab", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]:
    workdir = tmp_path_factory.mktemp("run")
    completed = sagelab("run", "--workdir", str(workdir), "--json")
    return workdir, json.loads(completed.stdout), completed


def test_digits_run_registers_version_1(first_run: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]) -> None:
    _workdir, summary, completed = first_run
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert summary["status"] == "Succeeded"
    assert [s["status"] for s in summary["steps"]] == ["Succeeded", "Succeeded", "Succeeded", "Succeeded", "Succeeded", "Skipped"]
    assert summary["metric"]["left"] >= 0.95 and summary["metric"]["result"] is True
    registered = summary["registered_model"]
    assert (registered["group"], registered["version"], registered["approval_status"]) == ("sagelab-dev-models", 1, "PendingManualApproval")
    assert Path(registered["model_data_path"]).is_file()
    evaluation = Path(summary["evaluation_dir"])
    assert {"evaluation.json", "confusion_matrix.png", "roc_curve.png"} <= {p.name for p in evaluation.iterdir()}
    # The step logs streamed with their prefixes, on stderr when --json is on.
    assert "[Preprocess] preprocess: multiclass on 'label'" in completed.stderr


def test_models_list_and_approve(first_run: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]) -> None:
    workdir = first_run[0]
    listed = json.loads(sagelab("models", "list", "--workdir", str(workdir), "--json").stdout)
    assert [(m["group"], m["version"], m["status"]) for m in listed] == [("sagelab-dev-models", 1, "PendingManualApproval")]
    assert listed[0]["metrics"]["accuracy"] >= 0.95
    approved = sagelab("models", "approve", "sagelab-dev-models", "1", "--workdir", str(workdir))
    assert approved.returncode == 0 and "Approved" in approved.stdout
    missing = sagelab("models", "approve", "sagelab-dev-models", "7", "--workdir", str(workdir))
    assert missing.returncode == 2 and "has no version 7" in missing.stderr


def test_threshold_not_met_fails_with_the_fail_steps_message(first_run: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]) -> None:
    workdir = first_run[0]
    completed = sagelab("run", "--workdir", str(workdir), "--param", "MetricThreshold=0.999", "--resume")
    assert completed.returncode == 1
    assert "does not meet the threshold: it must be at least 0.999." in completed.stdout
    assert "reused from an earlier run" in completed.stdout  # --resume: preprocess and train were cached
    listed = json.loads(sagelab("models", "list", "--workdir", str(workdir), "--json").stdout)
    assert len(listed) == 1, "a failed gate registers nothing"


def test_users_own_csv_with_string_target_and_categoricals(tmp_path: Path) -> None:
    data = tmp_path / "animals.csv"
    messy_frame(rows=400).to_csv(data, index=False)
    completed = sagelab(
        "run", "--workdir", str(tmp_path / "wd"), "--data", str(data), "--param", "TargetColumn=species", "--param", "MetricThreshold=0.8", "--json"
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout)
    assert summary["parameters"]["InputDataUri"].startswith("s3://sagelab-dev-data/uploads/animals-")
    assert summary["registered_model"]["version"] == 1
    assert "binary on 'species'" in completed.stderr


def test_bad_usage_is_exit_2_with_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["--param", "MaxDepth=deep"], "parameter MaxDepth is Integer; 'deep' is not a valid integer"),
        (["--param", "NoSuch=1"], "unknown parameter(s) ['NoSuch']"),
        (["--param", "oops"], "--param 'oops': expected Name=Value"),
        (["--data", str(tmp_path / "missing.csv")], "no such file or folder"),
    ):
        completed = sagelab("run", "--workdir", str(tmp_path / "wd"), *args)
        assert completed.returncode == 2, args
        assert message in completed.stderr and "Traceback" not in completed.stderr
