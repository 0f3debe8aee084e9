"""The front-door Lambda handler with API Gateway events; SageMaker calls stubbed with botocore's Stubber."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from sagelab.local.serve import LambdaContextStandIn, configure_handler_environment

configure_handler_environment("http://127.0.0.1:9", "sagelab-dev-endpoint")
from runtime.front_door import handler  # noqa: E402

ROW = [0.0] * 64


def event(method: str, path: str, body: Any = None, raw: str | None = None) -> dict[str, Any]:
    text = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "application/json", "x-api-key": "k"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "requestContext": {"requestId": "req-1", "stage": "prod", "resourcePath": path, "httpMethod": method, "identity": {"apiKey": "k"}},
        "body": text,
        "isBase64Encoded": False,
    }


def call(evt: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = handler.lambda_handler(evt, LambdaContextStandIn(aws_request_id="req-1"))
    headers = {**(response.get("headers") or {}), **{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}}
    return response["statusCode"], json.loads(response["body"]), headers


@pytest.fixture
def stub() -> Iterator[Stubber]:
    with Stubber(handler._runtime) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_invoke(stub: Stubber) -> dict[str, Any]:
    return {"EndpointName": "sagelab-dev-endpoint", "ContentType": "application/json", "Accept": "application/json", "Body": json.dumps({"instances": [ROW]})}


def test_predict_passes_rows_to_the_one_endpoint(stub: Stubber) -> None:
    answer = json.dumps({"predictions": [{"label": "0", "probabilities": {"0": 1.0}}]}).encode()
    stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"}, expect_invoke(stub))
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 200 and body["predictions"][0]["label"] == "0"


def test_no_endpoint_yet_is_503_with_what_to_do(stub: Stubber) -> None:
    stub.add_client_error("invoke_endpoint", "ValidationError", "Endpoint sagelab-dev-endpoint of account 123456789012 not found.", 400)
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 503 and body["error"] == "NoModelDeployed"
    assert "approve a model package" in body["message"]


def test_throttling_is_429_with_retry_after(stub: Stubber) -> None:
    stub.add_client_error("invoke_endpoint", "ThrottlingException", "Rate exceeded", 400)
    status, body, headers = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 429 and body["error"] == "Throttled" and headers["Retry-After"] == "2"


def test_model_failure_is_502_with_the_endpoints_message(stub: Stubber) -> None:
    stub.add_client_error(
        "invoke_endpoint", "ModelError", "Received server error (500)", 424,
        modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": json.dumps({"message": "xgboost: feature mismatch"})},
    )  # fmt: skip
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 502 and body == {"error": "ModelError", "message": "the model failed on this request: xgboost: feature mismatch"}


def test_model_rejecting_the_input_is_400_with_its_message(stub: Stubber) -> None:
    stub.add_client_error(
        "invoke_endpoint", "ModelError", "Received client error (400)", 424,
        modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": json.dumps({"message": "instances[0] has 2 values; expected 64"})},
    )  # fmt: skip
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 400 and body["message"] == "instances[0] has 2 values; expected 64"


def test_model_not_ready_is_503(stub: Stubber) -> None:
    stub.add_client_error("invoke_endpoint", "ModelNotReadyException", "not ready", 429)
    status, body, headers = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 503 and body["error"] == "ModelNotReady" and "Retry-After" in headers


def test_other_service_errors_are_502_not_500(stub: Stubber) -> None:
    stub.add_client_error("invoke_endpoint", "InternalFailure", "boom", 500)
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 502 and body["error"] == "EndpointError"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "the body is empty"),
        ("{bad", "the body is not valid JSON"),
        ('["x"]', 'the body must be a JSON object with an "instances" array'),
        ('{"rows": []}', "unknown field(s) ['rows']"),
        ('{"instances": 3}', '"instances" is required and must be an array'),
        ('{"instances": []}', '"instances" is empty'),
        ('{"instances": [["a", 1]]}', "instances[0][0] is str 'a'; row values must be numbers or null"),
        ('{"instances": [[1, true]]}', "instances[0][1] is bool True"),
        ('{"instances": [[NaN]]}', "body contains NaN"),
        ('{"instances": [[1e999]]}', "instances[0][0] is not a finite number"),
        ('{"instances": [[]]}', "instances[0] is an empty row"),
        ('{"instances": [{"a": [1]}]}', "instances[0].a is list"),
        ('{"instances": [7]}', "instances[0] is int"),
        (json.dumps({"instances": [[1]] * 1001}), '"instances" has 1001 rows; at most 1000'),
    ],
)
def test_malformed_input_is_400_naming_the_field(raw: str | None, message: str) -> None:
    status, body, _ = call(event("POST", "/predict", raw=raw))
    assert status == 400 and body["error"] == "BadRequest"
    assert message in body["message"], body["message"]


def test_oversized_body_is_413() -> None:
    raw = json.dumps({"instances": [[1.123456789] * 700] * 1000})
    assert len(raw) > handler.MAX_BODY_BYTES
    status, body, _ = call(event("POST", "/predict", raw=raw))
    assert status == 413 and body["error"] == "PayloadTooLarge"


def test_health_openapi_and_unknown_routes() -> None:
    status, body, _ = call(event("GET", "/health"))
    assert status == 200 and body == {"status": "ok", "endpoint": "sagelab-dev-endpoint"}
    status, body, _ = call(event("GET", "/openapi.json"))
    assert status == 200 and body["openapi"].startswith("3.0")
    status, body, _ = call(event("GET", "/nowhere"))
    assert status == 404 and body["error"] == "NotFound"


def test_checked_in_openapi_is_current() -> None:
    from runtime.front_door import build_openapi

    assert build_openapi.OPENAPI.read_text() == build_openapi.render(), "run python -m runtime.front_door.build_openapi"
