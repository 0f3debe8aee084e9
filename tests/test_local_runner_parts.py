"""The local runner's parts on their own: what the resume cache keeps, and the one place the runner
picks a container twin by image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagelab.local.runner.steps.training import container_for
from tests.test_local_runner import definition, run, seed


def test_the_resume_cache_keeps_sagemaker_properties_and_the_outputs_apart(tmp_path: Path) -> None:
    """A cache entry's properties are what `Steps.Score.<path>` may read (the processing job's
    Describe* shape), nothing of the runner's own; the outputs a person is shown are kept beside them,
    and a resumed run shows the same."""
    seed(tmp_path)
    first, _ = run(tmp_path, definition(score=0.9))
    (entry_file,) = (tmp_path / "cache").glob("*.json")
    entry = json.loads(entry_file.read_text())
    assert set(entry["properties"]) == {"ProcessingJobName", "ProcessingJobStatus", "ProcessingOutputConfig"}
    assert entry["outputs"] == {"report": str(tmp_path / "s3/bucket/runs" / first.execution_id / "Score")}
    second, _ = run(tmp_path, definition(score=0.9), resume=True)
    score = next(step for step in second.steps if step.name == "Score")
    assert score.status == "Cached" and score.outputs == entry["outputs"]
    # The gate still reads the reused step's property file: the condition saw 0.9.
    assert second.metric is not None and second.metric["value"] == 0.9


@pytest.mark.parametrize(
    ("image", "twin"),
    [
        ("382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1", "kmeans"),
        ("local/sagemaker-kmeans:1", "kmeans"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5", "script"),
        ("local/sagemaker-xgboost:3.0-5", "script"),
        ("local/sagemaker-autopilot:ensembling", "autopilot"),
    ],
)
def test_the_runner_picks_the_container_twin_by_image(image: str, twin: str) -> None:
    assert container_for(image) == twin
