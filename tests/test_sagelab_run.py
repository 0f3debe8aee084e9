"""`sagelab run` end to end on the real definition, and the local registry commands.

The digits run is the session's shared `trained_run` (a real `python -m sagelab run --json`
process); every other command is called in-process with `main(argv)`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, TrainedRun
from tests.test_step_scripts import messy_frame

pytestmark = pytest.mark.slow  # the session's trained digits run and further real runs


def test_digits_run_registers_version_1(trained_run: TrainedRun) -> None:
    summary = trained_run.summary
    assert trained_run.returncode == 0, trained_run.stderr[-2000:]
    assert summary["status"] == "Succeeded"
    ran = [s["name"] for s in summary["steps"] if s["status"] == "Succeeded"]
    assert ran == ["Preprocess", "IsXGBoost", "IsKMeans", "IsAutopilot", "Train", "Evaluate", "CheckMetric", "RegisterModel-RegisterModel"]
    assert {s["status"] for s in summary["steps"] if s["name"] not in ran} == {"Skipped"}
    assert summary["metric"]["value"] >= 0.95 and summary["metric"]["result"] is True
    registered = summary["registered_model"]
    assert (registered["group"], registered["version"], registered["approval_status"]) == ("sagelab-dev--models", 1, "PendingManualApproval")
    assert Path(registered["model_data_path"]).is_file()
    evaluation = Path(summary["evaluation_dir"])
    assert {"evaluation.json", "confusion_matrix.png", "roc_curve.png"} <= {p.name for p in evaluation.iterdir()}
    # The step logs streamed with their prefixes, on stderr when --json is on (stdout is only the JSON).
    assert "[Preprocess] preprocess: multiclass on 'label'" in trained_run.stderr
    assert json.loads(trained_run.stdout) == summary


def test_models_list_and_approve(trained_workdir: Path, trained_run: TrainedRun, cli: Cli) -> None:
    listed = json.loads(cli("models", "list", "--workdir", trained_workdir, "--json").stdout)
    assert [(m["group"], m["version"], m["status"]) for m in listed] == [("sagelab-dev--models", 1, "PendingManualApproval")]
    assert listed[0]["metrics"]["accuracy"] == trained_run.summary["metric"]["value"]
    approved = cli("models", "approve", "sagelab-dev--models", "1", "--workdir", trained_workdir)
    assert (approved.returncode, approved.stdout) == (0, "sagelab-dev--models version 1: Approved\n")
    missing = cli("models", "approve", "sagelab-dev--models", "7", "--workdir", trained_workdir)
    assert missing.returncode == 2 and missing.stderr.startswith("sagelab: error: ") and "has no version 7" in missing.stderr
    assert missing.stderr.count("\n") == 1


def test_threshold_not_met_fails_with_the_fail_steps_message(trained_workdir: Path, cli: Cli) -> None:
    completed = cli("run", "--workdir", trained_workdir, "--param", "MetricThreshold=0.999", "--resume")
    assert completed.returncode == 1
    assert "Gate failed: test accuracy 0.97" in completed.stdout and "is not >= 0.999" in completed.stdout
    assert "reused from an earlier run" in completed.stdout  # --resume: preprocess and train were cached
    listed = json.loads(cli("models", "list", "--workdir", trained_workdir, "--json").stdout)
    assert [m["version"] for m in listed] == [1], "a failed gate registers nothing"


def test_users_own_csv_with_string_target_and_categoricals(tmp_path: Path, cli: Cli) -> None:
    data = tmp_path / "animals.csv"
    messy_frame(rows=400).to_csv(data, index=False)
    completed = cli("run", "--workdir", tmp_path / "wd", "--data", data, "--param", "TargetColumn=species", "--param", "MetricThreshold=0.8", "--json")
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout)
    assert summary["parameters"]["InputDataUri"].startswith("s3://sagelab-dev--data/uploads/animals-")
    assert summary["registered_model"]["version"] == 1
    assert "binary on 'species'" in completed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "MaxDepth=deep"], "parameter MaxDepth is Integer; 'deep' is not a valid integer"),
        (["--param", "NoSuch=1"], "unknown parameter(s) ['NoSuch']"),
        (["--param", "oops"], "--param 'oops': expected Name=Value"),
        (["--data", "missing.csv"], "no such file or folder"),
    ],
    ids=["bad-integer", "unknown-parameter", "not-name-value", "missing-data"],
)
def test_bad_usage_is_exit_2_with_one_line(tmp_path: Path, cli: Cli, args: list[str], message: str) -> None:
    completed = cli("run", "--workdir", tmp_path / "wd", *[str(tmp_path / a) if a.endswith(".csv") else a for a in args])
    assert completed.returncode == 2, args
    assert message in completed.stderr and completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr


def test_local_is_the_default_for_models_and_pipeline_alike(tmp_path: Path, cli: Cli) -> None:
    """One rule: the local work directory unless --aws (no AWS call is tried without it)."""
    empty = tmp_path / "empty"
    assert cli("models", "list", "--workdir", empty, "--json").stdout == "[]\n"
    status = cli("pipeline", "status", "--workdir", empty)
    assert (status.returncode, status.stderr) == (
        2,
        f"sagelab: error: no local executions in {empty}; run `sagelab run` (or `sagelab pipeline start --local`) first\n",
    )
    with pytest.raises(SystemExit) as exit_:  # argparse: --aws and --local exclude each other
        cli("pipeline", "status", "--aws", "--local")
    assert exit_.value.code == 2


def test_version(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    with pytest.raises(SystemExit) as exit_:
        cli("--version")
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"sagelab {importlib.metadata.version('sagelab')}\n"
