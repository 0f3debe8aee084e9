"""Local S3 staging: our step scripts get hard links (no bytes copied), any other script private
copies, so no step's write into its inputs can reach local S3 (SageMaker never carries it back)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from sagelab.config import EnvironmentConfig
from sagelab.local import runner as runner_module
from sagelab.local.environment import prepare
from sagelab.local.runner import LocalS3, flatten_steps, reads_inputs_only
from sagelab.package_files import package_dir
from tests.conftest import TrainedRun
from tests.test_local_runner import definition, run, seed


def input_folders(step: dict[str, Any]) -> list[str]:
    """Where the step's container finds its inputs, from the definition."""
    arguments = step["Arguments"]
    if step["Type"] == "Processing":
        return [item["S3Input"]["LocalPath"] for item in arguments["ProcessingInputs"]]
    return [f"/opt/ml/input/data/{channel['ChannelName']}" for channel in arguments["InputDataConfig"]]


def staged_inputs(sandbox: Path, folders: list[str]) -> list[Path]:
    return [path for folder in folders for path in sorted((sandbox / "container" / folder.lstrip("/")).rglob("*")) if path.is_file()]


def test_our_steps_leave_local_s3_as_they_found_it(trained_run: TrainedRun, tmp_path: Path) -> None:
    """The digits pipeline (the session's `trained_run`, a real `sagelab run`): every input a step
    was given is a hard link to its object and was last written no later than the runner linked it
    into the step's folder (the folder's own time), which is before the step started: a write into
    it in place, by this step or a later one sharing the object, would change both, after that."""
    (execution,) = (trained_run.workdir / "executions").iterdir()
    sandboxes = {path.name: path for path in (execution / "steps").iterdir() if path.is_dir()}
    definition = prepare(EnvironmentConfig(), tmp_path / ".sagelab").definition  # the one the run ran
    checked = 0
    steps = flatten_steps(definition)
    for name in ("Preprocess", "Train", "Evaluate"):
        inputs = staged_inputs(sandboxes[name], input_folders(steps[name]))
        assert len(inputs) >= 2, (name, inputs)
        for path in inputs:
            status = path.stat()
            assert status.st_nlink >= 2, f"{name}: {path} was copied, not linked"
            assert status.st_mtime_ns <= path.parent.stat().st_mtime_ns, f"{name} wrote into its input {path}"
            checked += 1
    assert checked >= 8


WRITING_SCRIPT = """
import pathlib, sys
for path in pathlib.Path(sys.argv[sys.argv.index("--input") + 1]).rglob("*.csv"):
    with path.open("a") as handle:  # in place: the same inode
        handle.write("written by the step\\n")
out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1]); out.mkdir(parents=True, exist_ok=True)
(out / "report.json").write_text('{"metrics": {"score": 0.95}}')
"""


@pytest.mark.parametrize("fresh_processes", [False, True], ids=["forked", "fresh-interpreter"])
def test_a_script_of_yours_that_writes_into_its_inputs_leaves_local_s3_alone(tmp_path: Path, fresh_processes: bool) -> None:
    seed(tmp_path)
    (tmp_path / "s3/bucket/code/score.py").write_text(WRITING_SCRIPT)
    before = {path: path.read_bytes() for path in (tmp_path / "s3/bucket/data").iterdir()}
    result, _ = run(tmp_path, definition(), fresh_processes=fresh_processes)
    assert result.status == "Succeeded"
    assert {path: path.read_bytes() for path in before} == before
    staged = staged_inputs(next((tmp_path / "executions").glob("*/steps/Score")), ["/opt/ml/processing/input/data"])
    assert staged and all(path.read_text().endswith("written by the step\n") and path.stat().st_nlink == 1 for path in staged)


def test_only_our_unchanged_scripts_beside_our_own_read_inputs_in_place(tmp_path: Path) -> None:
    steps = package_dir("pipeline_steps")
    assert all(reads_inputs_only(steps / name) for name in runner_module.READ_ONLY_INPUT_SCRIPTS)
    assert not reads_inputs_only(steps / "inference.py")  # ours, but not on the list of input readers
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "train.py").write_bytes((steps / "train.py").read_bytes() + b"\n# edited\n")
    assert not reads_inputs_only(tmp_path / "edited" / "train.py")
    (tmp_path / "beside").mkdir()
    (tmp_path / "beside" / "train.py").write_bytes((steps / "train.py").read_bytes())
    assert reads_inputs_only(tmp_path / "beside" / "train.py")
    (tmp_path / "beside" / "preprocess.py").write_text("import os  # yours, imported by train.py\n")
    assert not reads_inputs_only(tmp_path / "beside" / "train.py")


def test_linking_falls_back_to_a_copy_across_filesystems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = LocalS3(tmp_path / "s3")
    (tmp_path / "s3/bucket/data").mkdir(parents=True)
    (tmp_path / "s3/bucket/data/a.csv").write_text("x\n1\n")
    assert s3.download("s3://bucket/data/", tmp_path / "linked", link=True)[0].stat().st_nlink == 2

    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    (copied,) = s3.download("s3://bucket/data/", tmp_path / "copied", link=True)
    assert copied.read_text() == "x\n1\n" and copied.stat().st_nlink == 1


def test_upload_replaces_a_linked_object_without_writing_into_it(tmp_path: Path) -> None:
    """A second upload to the same URI unlinks the old object first: the first source file keeps its content."""
    s3 = LocalS3(tmp_path / "s3")
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text("1")
    second.write_text("2")
    s3.upload(first, "s3://bucket/x.json", link=True)
    s3.upload(second, "s3://bucket/x.json", link=True)
    assert s3.path("s3://bucket/x.json").read_text() == "2" and first.read_text() == "1"
