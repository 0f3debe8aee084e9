"""The front door's data capture never costs a client its answer (stacks/front_door/runtime/capture.py).

What is captured, where, and how sampling follows the config is proven over real sockets in
tests/test_monitor_local.py; here the capture's S3 is unreachable (a closed port) and the answer
must still be the model's, with its inference id."""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from sagelab.local.serve import LambdaContextStandIn, configure_handler_environment
from stacks.front_door.runtime import capture

configure_handler_environment("http://127.0.0.1:9", "sagelab-dev--endpoint")
from stacks.front_door.runtime import handler  # noqa: E402

ROW = [0.0] * 64


def _event() -> dict[str, object]:
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "requestContext": {"requestId": "req-capture", "stage": "prod", "resourcePath": "/predict", "httpMethod": "POST", "identity": {}},
        "body": json.dumps({"instances": [ROW]}),
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize("percent", ["100", "0"])
def test_an_unwritable_capture_still_answers_with_the_inference_id(monkeypatch: pytest.MonkeyPatch, percent: str) -> None:
    monkeypatch.setenv("ARTIFACTS_BUCKET", "sagelab-dev-artifacts")
    monkeypatch.setenv("DATA_CAPTURE_PERCENT", percent)
    monkeypatch.setattr(handler, "_s3", handler.build_s3_client("http://127.0.0.1:9"))  # nothing listens there
    answer = json.dumps({"predictions": [{"label": "0", "probabilities": {"0": 1.0}}]}).encode()
    with Stubber(handler.runtime_client()) as stub:
        stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"})
        response = handler.lambda_handler(_event(), LambdaContextStandIn(aws_request_id="req-capture"))
    headers = {**(response.get("headers") or {}), **{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}}
    assert response["statusCode"] == 200 and json.loads(response["body"])["predictions"][0]["label"] == "0"
    assert headers[capture.INFERENCE_ID_HEADER] == "req-capture"


def test_sampling_follows_the_percent() -> None:
    assert not capture.sampled(0, draw=0.0) and capture.sampled(100, draw=0.999)
    assert capture.sampled(10, draw=0.099) and not capture.sampled(10, draw=0.1)
