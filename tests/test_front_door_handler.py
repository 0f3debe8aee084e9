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

configure_handler_environment("http://127.0.0.1:9", "sagelab-dev--endpoint")
from stacks.front_door.runtime import handler  # noqa: E402

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
    with Stubber(handler.runtime_client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_invoke(stub: Stubber) -> dict[str, Any]:
    return {"EndpointName": "sagelab-dev--endpoint", "ContentType": "application/json", "Accept": "application/json", "Body": json.dumps({"instances": [ROW]})}


def test_predict_passes_rows_to_the_one_endpoint(stub: Stubber) -> None:
    answer = json.dumps({"predictions": [{"label": "0", "probabilities": {"0": 1.0}}]}).encode()
    stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"}, expect_invoke(stub))
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 200 and body["predictions"][0]["label"] == "0"


def test_no_endpoint_yet_is_503_with_what_to_do(stub: Stubber) -> None:
    stub.add_client_error("invoke_endpoint", "ValidationError", "Endpoint sagelab-dev--endpoint of account 123456789012 not found.", 400)
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 503 and body["error"] == "NoModelDeployed"
    assert "approve a model package" in body["message"]


def test_throttling_is_429_with_retry_after(stub: Stubber) -> None:
    stub.add_client_error("invoke_endpoint", "ThrottlingException", "Rate exceeded", 400)
    status, body, headers = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 429 and body["error"] == "Throttled" and headers["Retry-After"] == "2"


def model_error(stub: Stubber, original_status: int, original_message: str) -> None:
    stub.add_client_error(
        "invoke_endpoint", "ModelError", f"Received error ({original_status}) from primary with message {original_message!r}", 424,
        modeled_fields={"OriginalStatusCode": original_status, "OriginalMessage": original_message},
    )  # fmt: skip


def test_model_failure_is_502_with_a_request_id_not_the_models_message(stub: Stubber) -> None:
    model_error(stub, 500, json.dumps({"message": "xgboost: feature mismatch"}))
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 502 and body["error"] == "ModelError" and body["requestId"] == "req-1"
    assert "xgboost" not in body["message"]


def test_model_rejecting_the_input_is_400_with_its_message(stub: Stubber) -> None:
    model_error(stub, 400, json.dumps({"message": "instances[0] has 2 values; expected 64"}))
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 400 and body["message"] == "instances[0] has 2 values; expected 64"


@pytest.mark.parametrize("original_status", [400, 406, 415])
def test_a_plain_text_4xx_of_a_builtin_container_is_relayed_as_a_400(stub: Stubber, original_status: int) -> None:
    model_error(stub, original_status, "unable to evaluate payload provided")
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 400 and body["error"] == "BadRequest" and body["message"] == "unable to evaluate payload provided"


def test_an_html_4xx_page_is_not_relayed(stub: Stubber) -> None:
    model_error(stub, 400, "<title>400 Bad Request</title>")
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert status == 400 and body["message"].startswith("the model rejected this input")


LEAKY_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sagelab-dev--endpoint"
TRACEBACK = 'Traceback (most recent call last):\n  File "/opt/ml/code/inference.py", line 42, in predict_fn\nKeyError: pixel_0'


@pytest.mark.parametrize(
    ("aws_code", "http_status", "aws_message", "original"),
    [
        ("ModelError", 424, "Received server error (500)", (500, json.dumps({"message": TRACEBACK}))),
        ("ModelError", 424, "Received client error (400)", (400, json.dumps({"message": f"cannot read {LEAKY_ARN}"}))),
        ("ModelError", 424, "Received client error (400)", (400, TRACEBACK)),
        ("InternalFailure", 500, f"An internal error occurred in {LEAKY_ARN}", None),
        ("AccessDeniedException", 400, f"User: arn:aws:sts::123456789012:assumed-role/x is not authorized on {LEAKY_ARN}", None),
    ],
    ids=["model-500-traceback", "model-400-arn", "model-400-traceback", "aws-internal-arn", "aws-access-denied-arn"],
)
def test_error_bodies_carry_a_request_id_never_arns_accounts_or_tracebacks(
    stub: Stubber, caplog: pytest.LogCaptureFixture, aws_code: str, http_status: int, aws_message: str, original: Any
) -> None:
    fields = {"OriginalStatusCode": original[0], "OriginalMessage": original[1]} if original else None
    stub.add_client_error("invoke_endpoint", aws_code, aws_message, http_status, modeled_fields=fields)
    status, body, _ = call(event("POST", "/predict", {"instances": [ROW]}))
    assert 400 <= status < 600 and set(body) == {"error", "message", "requestId"} and body["requestId"] == "req-1"
    text = json.dumps(body)
    for leak in ("arn:", "123456789012", "Traceback", "inference.py", aws_message):
        assert leak not in text, (leak, body)
    (logged,) = [r for r in caplog.records if r.getMessage() == "endpoint error"]  # the details are in the log
    assert logged.__dict__["endpoint_message"] == aws_message and logged.__dict__["original_message"] == (original[1] if original else "")


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
        ('["x"]', "the body must be object"),
        ('{"rows": []}', "the body must contain ['instances'] properties"),
        ('{"instances": [[1]], "rows": 1}', "the body must not contain {'rows'} properties"),
        ('{"instances": 3}', "instances must be array"),
        ('{"instances": []}', "instances must contain at least 1 items"),
        ('{"instances": [["a", 1]]}', "instances[0] cannot be validated by any definition; each row is a non-empty array of numbers or null"),
        ('{"instances": [[1, true]]}', "instances[0] cannot be validated"),
        ('{"instances": [[NaN]]}', "the body contains NaN"),
        ('{"instances": [[1e999]]}', "the body contains 1e999, which is not a finite number"),
        ('{"instances": [[]]}', "instances[0] cannot be validated"),
        ('{"instances": [{"a": [1]}]}', "instances[0] cannot be validated"),
        ('{"instances": [7]}', "instances[0] cannot be validated"),
        (json.dumps({"instances": [[1]] * 1001}), "instances must contain less than or equal to 1000 items"),
        ("[" * 5000 + "]" * 5000, "the body nests arrays or objects too deeply"),
        ('{"instances": ' + "[" * 20000 + "]" * 20000 + "}", "the body nests arrays or objects too deeply"),
    ],
)
def test_malformed_input_is_400_naming_the_field(raw: str | None, message: str) -> None:
    status, body, _ = call(event("POST", "/predict", raw=raw))
    assert status == 400 and body["error"] == "BadRequest" and body["requestId"] == "req-1"
    assert message in body["message"], body["message"]


def test_oversized_body_is_413() -> None:
    raw = json.dumps({"instances": [[1.123456789] * 700] * 1000})
    assert len(raw) > handler.MAX_BODY_BYTES
    status, body, _ = call(event("POST", "/predict", raw=raw))
    assert status == 413 and body["error"] == "PayloadTooLarge"


def test_health_is_not_the_functions_route() -> None:
    # API Gateway answers it with a MOCK integration; the function serves POST /predict and GET /openapi.json.
    for path in ("/health", "/nowhere"):
        status, body, _ = call(event("GET", path))
        assert status == 404 and body["error"] == "NotFound", path


def test_413_is_an_exception_type_not_a_sentinel_message() -> None:
    with pytest.raises(handler.PayloadTooLarge) as raised:
        handler.validate_payload(" " * (handler.MAX_BODY_BYTES + 1))
    assert isinstance(raised.value, handler.BadRequest) and raised.value.status == 413 and "__" not in str(raised.value)


def test_checked_in_openapi_is_current() -> None:
    from stacks.front_door import build_openapi

    assert build_openapi.OPENAPI.read_text() == build_openapi.render(), "run python -m stacks.front_door.build_openapi"
