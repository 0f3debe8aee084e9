"""The API front door: API Gateway (REST, proxy) -> this Lambda -> SageMaker endpoint.

    POST /predict        {"instances": [[...], ...]} or {"instances": [{"col": v}, ...]}
    GET  /health         liveness of the front door and whether a model is being served
    GET  /openapi.json   the API description (also checked into the repo)

Every failure is a JSON body with a status an API client can act on; never a stack trace:
    400 malformed input (names the field)      413 body over SageMaker's 6 MB limit
    429 endpoint throttling (Retry-After)      502 the model answered with an error
    503 no model deployed yet / not ready      504 the endpoint did not answer in time

`ENDPOINT_NAME` names the one endpoint this function may call. The same handler runs under
`sagelab serve`, where `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` points boto3 at the local endpoint.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

MAX_ROWS = 1000
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time InvokeEndpoint payload limit
RETRY_AFTER_SECONDS = 2
OPENAPI_PATH = Path(__file__).with_name("openapi.json")

logger = Logger(service="sagelab-front-door")
tracer = Tracer(service="sagelab-front-door")
app = APIGatewayRestResolver()
# Short timeouts and two attempts: API Gateway gives up at 29 s, and a client should hear "busy"
# quickly rather than wait on a stuck endpoint.
_runtime = boto3.client(
    "sagemaker-runtime",
    config=Config(connect_timeout=2, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"}),
)


class BadRequest(ValueError):
    """Input the front door rejects; the message names the field."""


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps({"error": code, "message": message}), headers=headers or {}
    )


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"body contains {name}; JSON numbers must be finite")


def validate_payload(body: str | None) -> dict[str, Any]:
    """The request schema (runtime/front_door/request_schema.json) with field-level messages."""
    if body is None or not body.strip():
        raise BadRequest('the body is empty; send {"instances": [[...], ...]}')
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise BadRequest("__too_large__")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object with an "instances" array')
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; the body has one field, instances")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise BadRequest('"instances" is required and must be an array of rows')
    if not instances:
        raise BadRequest('"instances" is empty; send at least one row')
    if len(instances) > MAX_ROWS:
        raise BadRequest(f'"instances" has {len(instances)} rows; at most {MAX_ROWS} per request')
    for index, row in enumerate(instances):
        if isinstance(row, list):
            if not row:
                raise BadRequest(f"instances[{index}] is an empty row")
            for position, value in enumerate(row):
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise BadRequest(f"instances[{index}][{position}] is {type(value).__name__} {value!r}; row values must be numbers or null")
                if isinstance(value, float) and not math.isfinite(value):
                    raise BadRequest(f"instances[{index}][{position}] is not a finite number")
        elif isinstance(row, dict):
            if not row:
                raise BadRequest(f"instances[{index}] is an empty record")
            for name, value in row.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                    raise BadRequest(f"instances[{index}].{name} is {type(value).__name__}; record values must be numbers, strings or null")
        else:
            raise BadRequest(f"instances[{index}] is {type(row).__name__}; each row must be an array of numbers or an object by column name")
    return payload


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "endpoint": os.environ.get("ENDPOINT_NAME", "")}


@app.get("/openapi.json")
def openapi() -> Response:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=OPENAPI_PATH.read_text())


@app.post("/predict")
@tracer.capture_method
def predict() -> Response:
    try:
        payload = validate_payload(app.current_event.body)
    except BadRequest as error:
        if str(error) == "__too_large__":
            return _error(413, "PayloadTooLarge", f"the body is over {MAX_BODY_BYTES} bytes, SageMaker's limit; split the rows into several requests")
        return _error(400, "BadRequest", str(error))
    endpoint = os.environ["ENDPOINT_NAME"]
    try:
        answer = _runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json", Accept="application/json", Body=json.dumps(payload))
    except ClientError as error:
        return _map_client_error(error, endpoint)
    except (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError) as error:
        logger.warning("endpoint unreachable", extra={"error": str(error)})
        return _error(504, "EndpointTimeout", f"the model endpoint {endpoint} did not answer in time; retry shortly")
    except BotoCoreError as error:
        logger.exception("endpoint call failed")
        return _error(502, "EndpointError", f"calling the model endpoint failed: {type(error).__name__}")
    body = answer["Body"].read()
    try:
        result = json.loads(body)
    except ValueError:
        return _error(502, "BadModelResponse", "the model endpoint answered with something that is not JSON")
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(result))


def _map_client_error(error: ClientError, endpoint: str) -> Response:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    logger.warning("endpoint error", extra={"code": code, "endpoint_message": message})
    if code in ("ValidationError", "ValidationException") and "not found" in message.lower():
        return _error(
            503,
            "NoModelDeployed",
            f"no model is deployed at endpoint {endpoint} yet: approve a model package in the registry (sagelab models approve GROUP VERSION) and wait for the deployment",
        )
    if code in ("ThrottlingException", "ServiceUnavailable", "ServiceUnavailableException"):
        return _error(429, "Throttled", "the model endpoint is at capacity; retry after the Retry-After interval", {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if code == "ModelNotReadyException":
        return _error(503, "ModelNotReady", f"the model at endpoint {endpoint} is still starting; retry in a minute", {"Retry-After": "30"})
    if code == "ModelError":
        original_status = int(error.response.get("OriginalStatusCode") or 500)
        original = error.response.get("OriginalMessage") or message
        if 400 <= original_status < 500:
            return _error(400, "BadRequest", _model_message(original))
        return _error(502, "ModelError", f"the model failed on this request: {_model_message(original)}")
    return _error(502, "EndpointError", f"the model endpoint answered {code}: {message}")


def _model_message(original: str) -> str:
    try:
        parsed = json.loads(original)
    except (TypeError, ValueError):
        return str(original)[:500]
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("error") or parsed)[:500]
    return str(parsed)[:500]


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response:
    logger.exception("unhandled error")
    return _error(500, "InternalError", "the front door failed unexpectedly; the error is logged")


@app.not_found
def not_found(_: Exception) -> Response:
    return _error(404, "NotFound", f"no route {app.current_event.http_method} {app.current_event.path}; see GET /openapi.json")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
