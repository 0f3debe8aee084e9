"""Every expression and condition type the SDK emits, evaluated by the local runner."""

from __future__ import annotations

from typing import Any

import pytest

from sagelab.local.expressions import (
    EvaluationContext,
    UnresolvedReference,
    UnsupportedExpression,
    evaluate,
    evaluate_condition,
    split_property_path,
)


@pytest.fixture
def context() -> EvaluationContext:
    return EvaluationContext(
        parameters={"Threshold": 0.9, "Name": "digits", "Count": 3, "Flag": True},
        execution={"PipelineExecutionId": "exec-1", "PipelineName": "p"},
        step_properties={
            "Prep": {"ProcessingOutputConfig": {"Outputs": {"train": {"S3Output": {"S3Uri": "s3://b/train"}}}}},
            "Tune": {"TrainingJobSummaries": [{"TrainingJobName": "best"}, {"TrainingJobName": "second"}]},
        },
        property_files={"Eval": {"Report": {"metrics": {"accuracy": 0.97, "items": [5, 6]}}}},
        read_s3_json=lambda uri: {"from": uri, "value": 42},
    )


def get(reference: str) -> dict[str, str]:
    return {"Get": reference}


def json_get(path: str) -> dict[str, Any]:
    return {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.Report"), "Path": path}}


def test_get_parameters_execution_and_step_properties(context: EvaluationContext) -> None:
    assert evaluate(get("Parameters.Threshold"), context) == 0.9
    assert evaluate(get("Execution.PipelineExecutionId"), context) == "exec-1"
    assert evaluate(get("Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"), context) == "s3://b/train"
    assert evaluate(get("Steps.Tune.TrainingJobSummaries[1].TrainingJobName"), context) == "second"


def test_join_renders_values_as_text(context: EvaluationContext) -> None:
    expression = {"Std:Join": {"On": "/", "Values": ["s3://b", get("Execution.PipelineExecutionId"), get("Parameters.Count"), get("Parameters.Flag")]}}
    assert evaluate(expression, context) == "s3://b/exec-1/3/true"


def test_json_get_on_property_file_and_s3_uri(context: EvaluationContext) -> None:
    assert evaluate(json_get("metrics.accuracy"), context) == 0.97
    assert evaluate(json_get("metrics.items[1]"), context) == 6
    assert evaluate({"Std:JsonGet": {"S3Uri": "s3://b/r.json", "Path": "value"}}, context) == 42


def test_nested_structures_are_evaluated_in_place(context: EvaluationContext) -> None:
    assert evaluate({"A": [get("Parameters.Name"), {"B": get("Parameters.Count")}]}, context) == {"A": ["digits", {"B": 3}]}


@pytest.mark.parametrize(
    ("condition_type", "left", "right", "expected"),
    [
        ("Equals", 0.97, 0.97, True),
        ("Equals", "a", "b", False),
        ("GreaterThan", 0.97, 0.9, True),
        ("GreaterThan", 0.9, 0.9, False),
        ("GreaterThanOrEqualTo", 0.9, 0.9, True),
        ("LessThan", 0.8, 0.9, True),
        ("LessThan", 0.9, 0.9, False),
        ("LessThanOrEqualTo", 0.9, 0.9, True),
        ("LessThanOrEqualTo", 1.0, 0.9, False),
    ],
)
def test_comparisons(context: EvaluationContext, condition_type: str, left: Any, right: Any, expected: bool) -> None:
    assert evaluate_condition({"Type": condition_type, "LeftValue": left, "RightValue": right}, context) is expected


def test_comparison_with_expressions(context: EvaluationContext) -> None:
    condition = {"Type": "GreaterThanOrEqualTo", "LeftValue": json_get("metrics.accuracy"), "RightValue": get("Parameters.Threshold")}
    assert evaluate_condition(condition, context) is True


def test_in_not_or(context: EvaluationContext) -> None:
    assert evaluate_condition({"Type": "In", "QueryValue": get("Parameters.Name"), "Values": ["mnist", "digits"]}, context) is True
    assert evaluate_condition({"Type": "In", "QueryValue": get("Parameters.Count"), "Values": [1, 2]}, context) is False
    inner = {"Type": "LessThan", "LeftValue": 1, "RightValue": 0}
    assert evaluate_condition({"Type": "Not", "Condition": inner}, context) is True
    assert evaluate_condition({"Type": "Or", "Conditions": [inner, {"Type": "Equals", "LeftValue": get("Parameters.Count"), "RightValue": 3}]}, context) is True
    assert evaluate_condition({"Type": "Or", "Conditions": [inner, inner]}, context) is False


def test_unsupported_and_unresolved_are_named(context: EvaluationContext) -> None:
    with pytest.raises(UnsupportedExpression, match="'Std:Frobnicate' is not supported"):
        evaluate({"Std:Frobnicate": {}}, context)
    with pytest.raises(UnsupportedExpression, match="condition type 'Xor'"):
        evaluate_condition({"Type": "Xor"}, context)
    with pytest.raises(UnresolvedReference, match="no parameter 'Missing'"):
        evaluate(get("Parameters.Missing"), context)
    with pytest.raises(UnresolvedReference, match="step 'Later' has not run"):
        evaluate(get("Steps.Later.ModelArtifacts.S3ModelArtifacts"), context)
    with pytest.raises(UnresolvedReference, match="no 'loss'"):
        evaluate(json_get("metrics.loss"), context)


def test_property_path_parsing() -> None:
    assert split_property_path("A.Outputs['x y'].B[3].C") == ["A", "Outputs", "x y", "B", 3, "C"]
    with pytest.raises(UnsupportedExpression):
        split_property_path("A..B")
