"""The API front door: API Gateway (REST, proxy) -> this Lambda -> SageMaker endpoint.

    POST /predict        {"instances": [[...], ...]} or {"instances": [{"col": v}, ...]}

`GET /health` and `GET /openapi.json` never reach this function: API Gateway answers them itself
(MOCK integrations, stacks/front_door.py), so they neither cost an invocation nor share its
reserved concurrency and throttle with /predict.

Every failure is a JSON body {"error", "message", "requestId"} with a status an API client can act on:
    400 malformed input (names the field)      413 body over SageMaker's 6 MB limit
    429 endpoint throttling (Retry-After)      502 the model answered with an error
    503 no model deployed yet / not ready      504 the endpoint did not answer in time
What AWS or the model said (messages with ARNs, account ids, tracebacks) goes to the log under
the same request id, never into the body.

`ENDPOINT_NAME` names the one endpoint this function may call. The same handler runs under
`sagelab serve`, where `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` points boto3 at the local endpoint.

Cold start: X-Ray's SDK (~200 ms to import) loads only when tracing is on (the stack sets
POWERTOOLS_TRACE_DISABLED unless asked for in-code tracing), and boto3's client and the compiled
request schema are built on the first /predict, once.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time InvokeEndpoint payload limit
RETRY_AFTER_SECONDS = 2
REQUEST_SCHEMA_PATH = Path(__file__).with_name("request_schema.json")
TRUTHY = ("1", "true", "yes", "on")

logger = Logger(service="sagelab-front-door")
app = APIGatewayRestResolver()
# Built on first use (build_runtime_client); `sagelab serve` and tests may replace it.
_runtime: BaseClient | None = None


class BadRequest(ValueError):
    """Input the front door rejects with 400; the message names the field."""

    status = 400
    code = "BadRequest"


class PayloadTooLarge(BadRequest):
    """A body over SageMaker's payload limit (413)."""

    status = 413
    code = "PayloadTooLarge"


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in TRUTHY


def build_runtime_client(endpoint_url: str | None = None) -> BaseClient:
    import boto3
    from botocore.config import Config

    # Short timeouts and two attempts: API Gateway gives up at 29 s, and a client should hear
    # "busy" quickly rather than wait on a stuck endpoint.
    config = Config(connect_timeout=2, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, config=config)


def runtime_client() -> BaseClient:
    global _runtime
    if _runtime is None:
        _runtime = build_runtime_client()
    return _runtime


# -- the request ----------------------------------------------------------------------------------
@cache
def schema_validator() -> Callable[[Any], Any]:
    """request_schema.json compiled once (fastjsonschema, ~10 ms) on the first /predict."""
    import fastjsonschema

    return fastjsonschema.compile(json.loads(REQUEST_SCHEMA_PATH.read_text()))


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"the body contains {name}; JSON numbers must be finite")


_MAY_OVERFLOW = re.compile(r"\d[eE]\+?\d{3}|\d{309}")


def _reject_infinite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"the body contains {text}, which is not a finite number")
    return value


def parse_body(body: str | None) -> Any:
    """The checks a JSON schema cannot express: byte size, well-formed JSON, finite numbers, and
    nesting the parser can take (a body thousands of levels deep is a 400, not a crash)."""
    if body is not None and len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES} bytes, SageMaker's limit; split the rows into several requests")
    if body is None or not body.strip():
        raise BadRequest('the body is empty; send {"instances": [[...], ...]}')
    # Only a number with a 3-digit exponent or 309+ digits can overflow to inf; checking every
    # float in Python would cost more than the parse, so only such bodies pay for it.
    parse_float = _reject_infinite if _MAY_OVERFLOW.search(body) else None
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=parse_float)
    except json.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise BadRequest("the body nests arrays or objects too deeply; a request is an object of rows of values") from None


def validate_payload(body: str | None) -> dict[str, Any]:
    """A parsed body that satisfies request_schema.json (the schema API Gateway applies too)."""
    import fastjsonschema

    payload = parse_body(body)
    try:
        schema_validator()(payload)
    except fastjsonschema.JsonSchemaValueException as error:
        raise BadRequest(_schema_message(error)) from None
    result: dict[str, Any] = payload
    return result


def _schema_message(error: Any) -> str:
    where = re.sub(r"^data\.?", "", error.name) or "the body"
    message = error.message.replace(error.name, where, 1)
    if error.rule == "anyOf":
        message += "; each row is a non-empty array of numbers or null, or a non-empty object of numbers, strings or null by column name"
    return message


# -- responses -------------------------------------------------------------------------------------
def request_id() -> str:
    """API Gateway's request id: in its access log, our log lines (correlation id) and error bodies."""
    event = app.current_event
    return str(event.request_context.request_id or (app.lambda_context.aws_request_id if app.lambda_context else ""))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": code, "message": message, "requestId": request_id()}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body), headers=headers or {})


@app.exception_handler(BadRequest)
def bad_request(error: BadRequest) -> Response:
    return _error(error.status, error.code, str(error))


@app.post("/predict")
def predict() -> Response:
    from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    payload = validate_payload(app.current_event.body)
    endpoint = os.environ["ENDPOINT_NAME"]
    try:
        answer = runtime_client().invoke_endpoint(EndpointName=endpoint, ContentType="application/json", Accept="application/json", Body=json.dumps(payload))
    except ClientError as error:
        return _map_client_error(error, endpoint)
    except (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError) as error:
        logger.warning("endpoint unreachable", extra={"error": str(error)})
        return _error(504, "EndpointTimeout", "the model endpoint did not answer in time; retry shortly")
    except BotoCoreError:
        logger.exception("endpoint call failed")
        return _error(502, "EndpointError", "calling the model endpoint failed; the error is logged under this request id")
    body = answer["Body"].read()
    try:
        result = json.loads(body)
    except ValueError:
        logger.warning("model answer is not JSON", extra={"answer_head": body[:200].decode(errors="replace")})
        return _error(502, "BadModelResponse", "the model endpoint answered with something that is not JSON")
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(result))


def _map_client_error(error: ClientError, endpoint: str) -> Response:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    original_status = int(error.response.get("OriginalStatusCode") or 500)
    original = error.response.get("OriginalMessage") or ""
    # The whole story goes to the log; the body gets a code, advice and the request id.
    logger.warning("endpoint error", extra={"code": code, "endpoint_message": message, "original_status": original_status, "original_message": original})
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
    if code == "ModelError" and 400 <= original_status < 500:
        told = client_safe_model_message(original)
        return _error(400, "BadRequest", told or "the model rejected this input; the reason is logged under this request id")
    if code == "ModelError":
        return _error(502, "ModelError", "the model failed on this request; the error is logged under this request id")
    return _error(502, "EndpointError", "the model endpoint answered with an error; it is logged under this request id")


# Anything that looks like an AWS resource, an account, a file path or a traceback stays in the log.
_UNSAFE = re.compile(r"arn:aws|\b\d{12}\b|Traceback|File \"|\.py\b|\n|amazonaws\.com|/opt/|/var/|/tmp/")


def client_safe_model_message(original: str) -> str | None:
    """The `message` of a model's 4xx answer (our inference.py's InvalidInput, which describes the
    client's rows) when it is short and carries nothing about the deployment; else None."""
    try:
        parsed = json.loads(original)
    except (TypeError, ValueError):
        return None
    message = parsed.get("message") if isinstance(parsed, dict) else None
    if not isinstance(message, str) or not message or len(message) > 300 or _UNSAFE.search(message):
        return None
    return message


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response:
    logger.exception("unhandled error")
    return _error(500, "InternalError", "the front door failed unexpectedly; the error is logged under this request id")


@app.not_found
def not_found(_: Exception) -> Response:
    return _error(404, "NotFound", f"no route {app.current_event.http_method} {app.current_event.path}; see GET /openapi.json")


def _resolve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def _entry_point() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    entry = logger.inject_lambda_context(correlation_id_path="requestContext.requestId")(_resolve)
    if tracing_enabled():
        from aws_lambda_powertools import Tracer

        entry = Tracer(service="sagelab-front-door").capture_lambda_handler(entry)
    return entry


lambda_handler = _entry_point()
