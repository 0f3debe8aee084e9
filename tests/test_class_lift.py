"""`sagelab class lift`: the CLI asks the class's enforcer (found by the class stack's output) to lift a cap."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from sagelab.aws_ops import AwsOperations, OperationError
from sagelab.cli import main
from sagelab.spend_cap import SPEND_CAP_FUNCTION_OUTPUT, lift

FUNCTION = "sagelab-class--us-east-1-SpendCapFunction-X"


def _ops(monkeypatch: pytest.MonkeyPatch, payload: dict[str, Any], function_error: bool = False, outputs: bool = True) -> tuple[AwsOperations, list[Stubber]]:
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ops = AwsOperations(session)
    lambda_client = ops.client("lambda")  # the one `lift` gets: the operations keep each client they make
    cfn, lam = Stubber(ops.cloudformation), Stubber(lambda_client)
    stack = {"StackName": "sagelab-class--us-east-1", "CreationTime": "2026-12-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE"}
    if outputs:
        stack["Outputs"] = [{"OutputKey": SPEND_CAP_FUNCTION_OUTPUT, "OutputValue": FUNCTION}]
    cfn.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "sagelab-class--us-east-1"})
    if outputs:
        body = json.dumps(payload).encode()
        response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
        if function_error:
            response["FunctionError"] = "Unhandled"
        expected = {"action": "lift", "student": "ana", "cap_usd": 20.0}
        lam.add_response("invoke", response, {"FunctionName": FUNCTION, "Payload": json.dumps(expected).encode()})
    cfn.activate()
    lam.activate()
    return ops, [cfn, lam]


def test_lift_invokes_the_class_enforcer_and_reports_the_new_cap(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ops, stubbers = _ops(monkeypatch, {"result": "lifted", "student": "ana", "spent_usd": 12.5, "cap_usd": 20.0})
    monkeypatch.setattr("sagelab.cli._aws", lambda args: ops)
    assert main(["class", "lift", "ana", "--cap", "20", "--region", "us-east-1"]) == 0
    assert "ana: cap lifted; spent $12.50 this month, new cap $20.00" in capsys.readouterr().out
    for stubber in stubbers:
        stubber.assert_no_pending_responses()


def test_a_refused_lift_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    ops, _ = _ops(
        monkeypatch, {"errorMessage": "a cap of $20.00 is not above what ana has spent this month ($31.00): give a higher --cap"}, function_error=True
    )
    with pytest.raises(OperationError, match=r"lift refused: a cap of \$20.00 is not above"):
        lift(ops, "us-east-1", "ana", 20.0)


def test_a_class_without_a_cap_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    ops, _ = _ops(monkeypatch, {}, outputs=False)
    with pytest.raises(OperationError, match="sagelab-class--us-east-1 has no spending cap"):
        lift(ops, "us-east-1", "ana", 20.0)
