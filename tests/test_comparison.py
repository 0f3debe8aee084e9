"""The drift check's comparison module (stacks/drift_check/runtime/comparison.py) on small hand-made
baselines: each check fires on its own input and stays quiet on the baseline's own data."""

from __future__ import annotations

import json
import random

import pytest

from pipeline_steps import evaluate
from stacks.drift_check.runtime import comparison
from stacks.drift_check.runtime.comparison import Baseline, DriftSettings, compare, psi
from stacks.front_door.runtime import capture


def _baseline(draw: random.Random, rows: int = 2000) -> tuple[Baseline, list[dict[str, object]]]:
    """A baseline built by evaluate.py's own functions from `rows` training rows: a numeric `size`
    with gaps (90 % present) and a categorical `colour`."""
    import numpy as np

    sizes = [draw.gauss(10, 2) for _ in range(rows)]
    colours = [draw.choice(["red", "green", "blue"]) for _ in range(rows)]
    features = [
        evaluate.numeric_statistics("size", np.array(sizes), missing=rows // 9),
        evaluate.categorical_statistics("colour", colours, missing=0),
    ]
    completeness = {"size": 0.9, "colour": 1.0}
    baseline = Baseline({"features": features}, evaluate.constraints_of(features, completeness))
    live = [{"size": (draw.gauss(10, 2) if draw.random() < 0.9 else None), "colour": draw.choice(["red", "green", "blue"])} for _ in range(300)]
    return baseline, live


def _checks(report: comparison.Report) -> set[tuple[str, str]]:
    return {(v.feature, v.check) for v in report.violations}


def test_rows_like_the_baseline_are_clean_and_every_check_fires_on_its_own_input() -> None:
    draw = random.Random(7)
    baseline, live = _baseline(draw)
    assert compare(baseline, live).violations == []
    shifted = [{**row, "size": row["size"] + 6 if row["size"] is not None else None} for row in live]
    assert _checks(compare(baseline, shifted)) == {("size", "baseline_drift_check")}
    unseen = [{**row, "colour": "purple"} if i == 5 else row for i, row in enumerate(live)]  # many would be drift too
    assert _checks(compare(baseline, unseen)) == {("colour", "categorical_values_check")}
    sparse = [{**row, "size": None} if i % 2 else row for i, row in enumerate(live)]
    assert ("size", "completeness_check") in _checks(compare(baseline, sparse))
    extra = [{**row, "weight": 3} for row in live]
    assert _checks(compare(baseline, extra)) == {("weight", "extra_column_check")}
    missing = [{"size": row["size"]} for row in live]
    assert _checks(compare(baseline, missing)) == {("colour", "missing_column_check")}
    typed = [{**row, "size": "large"} if i == 3 else row for i, row in enumerate(live)]
    assert _checks(compare(baseline, typed)) == {("size", "data_type_check")}


def test_positional_rows_name_columns_by_position() -> None:
    draw = random.Random(8)
    baseline, live = _baseline(draw)
    rows = [[row["size"], row["colour"]] for row in live]
    assert compare(baseline, rows).violations == []
    assert _checks(compare(baseline, [[*row, 1.0] for row in rows])) == {("column 3", "extra_column_check")}
    assert _checks(compare(baseline, [row[:1] for row in rows])) == {("colour", "missing_column_check")}


def test_too_few_values_are_reported_not_judged() -> None:
    baseline, live = _baseline(random.Random(9))
    report = compare(baseline, [{**row, "size": 99.0} for row in live[:10]], settings=DriftSettings(min_rows=30))
    assert report.features["size"].drift is None and report.violations == []


def test_psi_is_zero_on_equal_histograms_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert 0 < psi([10, 20, 30], [20, 20, 20]) < psi([10, 20, 30], [30, 20, 10])


def test_labels_by_inference_id_score_live_accuracy() -> None:
    draw = random.Random(10)
    baseline, live = _baseline(draw)
    evaluation = {"sagelab_summary": {"problem_type": "multiclass", "metrics": {"accuracy": 0.9}}}
    baseline = Baseline(baseline.statistics, baseline.constraints, evaluation=evaluation)
    records = [
        capture.capture_record(f"req-{i}", json.dumps({"instances": [row]}), 200, json.dumps({"predictions": [{"label": "a" if i % 4 else "b"}]}))
        for i, row in enumerate(live[:40])
    ]
    right = {f"req-{i}": "a" if i % 4 else "b" for i in range(40)}  # a one-row request's bare id
    report = comparison.check(baseline, records, right)
    assert report.quality is not None and report.quality["live"] == 1.0 and report.quality["labelled_rows"] == 40 and not report.quality["violated"]
    wrong = {f"req-{i}{capture.ROW_SEPARATOR}0": "b" for i in range(40)}  # the `<id>:<row>` form
    report = comparison.check(baseline, records, wrong)
    assert report.quality is not None and report.quality["violated"] and ("prediction", "model_quality_check") in _checks(report)


def test_the_baselines_file_names_are_the_ones_evaluate_writes() -> None:
    """evaluate.py cannot import the module in its container: the names are tied here."""
    for name in ("STATISTICS_FILE_NAME", "CONSTRAINTS_FILE_NAME", "PREDICTION_STATISTICS_FILE_NAME", "EVALUATION_FILE_NAME"):
        assert getattr(comparison, name) == getattr(evaluate, name), name
    assert evaluate.PREDICTION_FEATURE == comparison.PREDICTION


def test_every_registered_version_points_at_its_evaluations_baseline() -> None:
    """In the definition: each chain's Evaluate gets the training split and each RegisterModel names
    the statistics and constraints beside that Evaluate's evaluation.json (DriftCheckBaselines and
    ModelMetrics.ModelDataQuality)."""
    from sagelab.config import PipelineConfig
    from sagelab.pipeline_definition import build_definition, iter_steps

    steps = {step["Name"]: step for step in iter_steps(build_definition(PipelineConfig()))}
    registers = [step for name, step in steps.items() if name.endswith("RegisterModel-RegisterModel")]
    assert len(registers) >= 3
    for register in registers:
        arguments = register["Arguments"]
        for section in (arguments["DriftCheckBaselines"]["ModelDataQuality"], arguments["ModelMetrics"]["ModelDataQuality"]):
            for baseline, file_name in (("Statistics", comparison.STATISTICS_FILE_NAME), ("Constraints", comparison.CONSTRAINTS_FILE_NAME)):
                joined = section[baseline]["S3Uri"]["Std:Join"]["Values"]
                evaluate_step = joined[0]["Get"].split(".")[1]
                assert joined[1] == file_name and evaluate_step in steps
                evaluation = steps[evaluate_step]["Arguments"]
                inputs = {i["InputName"] for i in evaluation["ProcessingInputs"]}
                assert "train" in inputs and "--train-dir" in evaluation["AppSpecification"]["ContainerArguments"]
