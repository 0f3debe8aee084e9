"""The API front door: API Gateway (REST, proxy) -> this Lambda -> SageMaker endpoint.

    POST /predict        {"instances": [[...], ...]} or {"instances": [{"col": v}, ...]}
    GET  /openapi.json   the API description with the served model's description merged in

`GET /health` never reaches this function: API Gateway answers it itself (a MOCK integration,
stacks/front_door/construct.py), so it neither costs an invocation nor shares the reserved concurrency.

The served model decides how the front door speaks to the endpoint (decision 0011), from the
function's configuration (set from the model package's CustomerMetadataProperties):
    MODEL_ALGORITHM        xgboost | custom (default xgboost): JSON to our inference.py, its answer as is
                           kmeans: text/csv of numeric rows to built-in K-Means, its JSON answer
                                   (closest_cluster, distance_to_cluster) as {"cluster", "distance"}
                           autopilot: text/csv rows (null = empty cell) to Autopilot's inference
                                   containers, its CSV answer (one label per line) as {"label"} or {"value"}
    MODEL_PROBLEM_TYPE     binary | multiclass | regression | clustering, as evaluate.py writes it, or unset
                           (registered before 0011); Autopilot's answer is a value for regression, else a label
    MODEL_DESCRIPTION_URI  s3:// URI of model_description.json (feature order for records; /openapi.json),
                           read once per execution environment; unset or unreadable, records cannot be
                           ordered for a CSV container and /openapi.json serves the generic base.
Every algorithm answers {"predictions": [{"label", "probabilities"} | {"value"} | {"cluster", "distance"}]}.

Every failure is a JSON body {"error", "message", "requestId"} with a status an API client can act on:
    400 malformed input (names the field), or the model's own 4xx (its message, when it names
        nothing of the deployment: decision 0017)   413 body over SageMaker's 6 MB limit
    429 endpoint throttling (Retry-After)      502 the model answered with an error
    503 no model deployed yet / not ready      504 the endpoint did not answer in time
What AWS or the model said (messages with ARNs, account ids, tracebacks) goes to the log under
the same request id, never into the body.

Data capture (capture.py): `DATA_CAPTURE_PERCENT` of the /predict calls that pass the request
schema are written to `ARTIFACTS_BUCKET` (SSE-KMS by the bucket's default) with the API Gateway
request id as inference id, which every answer carries in `X-Inference-Id` (labels are uploaded by it).

`ENDPOINT_NAME` names the one endpoint this function may call. The same handler runs under
`sagelab serve`, where `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` and `AWS_ENDPOINT_URL_S3` point boto3
at the local endpoint (which also answers path-style S3 GetObject from the local S3).

Cold start: X-Ray's SDK (~200 ms to import) loads only when tracing is on (the stack sets
POWERTOOLS_TRACE_DISABLED unless asked for in-code tracing), and boto3's client and the compiled
request schema are built on the first /predict, once; the S3 client and the model description on
the first request that needs them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

try:  # in the Lambda package the modules sit side by side (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
    from container_codecs import CODECS  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the repository: tests, `sagelab serve`
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]
    from stacks.front_door.runtime.container_codecs import CODECS  # type: ignore[no-redef,unused-ignore]

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time InvokeEndpoint payload limit
RETRY_AFTER_SECONDS = 2
REQUEST_SCHEMA_PATH = Path(__file__).with_name("request_schema.json")
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
TRUTHY = ("1", "true", "yes", "on")
DESCRIPTION_RETRY_SECONDS = 60  # an unreadable description is tried again after this long

logger = Logger(service="sagelab-front-door")
app = APIGatewayRestResolver()
# Built on first use (build_runtime_client); `sagelab serve` and tests may replace it.
_runtime: BaseClient | None = None
_s3: BaseClient | None = None
# (description or None, why there is none, when it was read): read once per execution environment.
_description: tuple[dict[str, Any] | None, str, float] | None = None


class BadRequest(ValueError):
    """Input the front door rejects with 400; the message names the field."""

    status = 400
    code = "BadRequest"


class ModelConfigurationError(RuntimeError):
    """The function's model configuration cannot be used (an operator's mistake, not the client's)."""


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


def build_s3_client(endpoint_url: str | None = None) -> BaseClient:
    import boto3
    from botocore.config import Config

    # A local S3 (`sagelab serve`: endpoint_url or AWS_ENDPOINT_URL_S3) answers path-style requests only.
    addressing = "path" if endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") else "auto"
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": addressing})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def s3_client() -> BaseClient:
    global _s3
    if _s3 is None:
        _s3 = build_s3_client()
    return _s3


# -- the served model --------------------------------------------------------------------------------
def model_algorithm() -> str:
    algorithm = os.environ.get(contract.ENV_ALGORITHM, "").strip().lower() or contract.DEFAULT_ALGORITHM
    if algorithm not in CODECS:  # the front door speaks to what it has a codec for
        raise ModelConfigurationError(f"{contract.ENV_ALGORITHM} is {algorithm!r}; expected one of {', '.join(CODECS)}")
    return algorithm


def model_problem_type() -> str:
    """The served model's problem type, or "" when its package has none (registered before 0011)."""
    problem_type = os.environ.get(contract.ENV_PROBLEM_TYPE, "").strip()
    if problem_type and problem_type not in contract.PROBLEM_FAMILIES:
        raise ModelConfigurationError(f"{contract.ENV_PROBLEM_TYPE} is {problem_type[:40]!r}; expected one of {', '.join(contract.PROBLEM_FAMILIES)} or unset")
    return problem_type


def _model_openapi() -> Any:
    # In the Lambda package the module sits beside this one; in the repository it is in a package.
    try:
        import model_openapi
    except ModuleNotFoundError:
        from stacks.front_door.runtime import model_openapi
    return model_openapi


def model_description() -> tuple[dict[str, Any] | None, str]:
    """(model_description.json, "") or (None, why not). Read from MODEL_DESCRIPTION_URI with S3
    GetObject once per execution environment; a failed read is retried after a minute. The reason
    is for clients (no bucket, key or AWS message in it); the details are logged."""
    global _description
    uri = os.environ.get(contract.ENV_DESCRIPTION_URI, "").strip()
    if not uri:
        return None, "This deployment has no model description (MODEL_DESCRIPTION_URI is not set); the request schema is the generic one."
    if _description is not None and (_description[0] is not None or time.monotonic() - _description[2] < DESCRIPTION_RETRY_SECONDS):
        return _description[0], _description[1]
    description: dict[str, Any] | None = None
    note = ""
    try:
        bucket = os.environ.get("ARTIFACTS_BUCKET", "")
        if bucket and not uri.startswith(f"s3://{bucket}/"):  # IAM would refuse it anyway; say why
            raise ValueError("the description URI is not in this environment's artifacts bucket")
        description = _model_openapi().checked_description(_read_s3_json(uri))
    except Exception as error:  # any failure degrades to the generic description, never a 5xx
        logger.warning("model description unreadable", extra={"uri": uri, "error": f"{type(error).__name__}: {error}"})
        note = "The model description could not be read (the reason is in the function's log); the request schema is the generic one."
    _description = (description, note, time.monotonic())
    return description, note


def _capture() -> Any:
    try:
        import capture
    except ModuleNotFoundError:
        from stacks.front_door.runtime import capture
    return capture


def captured(response: Response) -> Response:
    """The answer with its inference id; a sample of requests and answers written to the capture
    prefix. A failed write is logged and never fails the request."""
    capture = _capture()
    inference_id = request_id()
    response.headers[capture.INFERENCE_ID_HEADER] = inference_id
    bucket = os.environ.get("ARTIFACTS_BUCKET", "")
    if not bucket or not capture.sampled(float(os.environ.get("DATA_CAPTURE_PERCENT") or 0)):
        return response
    try:
        answer = response.body if isinstance(response.body, str) else (response.body or b"").decode("utf-8", errors="replace")
        record = capture.capture_record(inference_id, app.current_event.body or "", response.status_code, answer)
        key = capture.capture_key(inference_id, datetime.now(UTC))
        s3_client().put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode(), ContentType="application/json")
    except Exception as error:
        logger.warning("data capture failed", extra={"error": f"{type(error).__name__}: {error}"})
    return response


def _read_s3_json(uri: str) -> Any:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} names no bucket and key")
    return json.loads(s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())


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


@app.exception_handler(ModelConfigurationError)
def misconfigured(error: ModelConfigurationError) -> Response:
    logger.error("model configuration", extra={"error": str(error)})
    return _error(503, "ModelMisconfigured", "the front door's model configuration is invalid; an operator must fix it (logged under this request id)")


@app.get("/openapi.json")
def openapi() -> Response:
    """The static base with the served model's description merged in; the base with a note when
    there is no readable description (never an error: the description is documentation)."""
    base = json.loads(OPENAPI_PATH.read_text())
    try:
        algorithm, problem_type = model_algorithm(), model_problem_type()
    except ModelConfigurationError as error:
        logger.error("model configuration", extra={"error": str(error)})
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(base))
    description, note = model_description()
    document = _model_openapi().describe(base, algorithm=algorithm, problem_type=problem_type, description=description, note=note)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(document))


@app.post("/predict")
def predict() -> Response:
    return captured(_predict())


def _predict() -> Response:
    from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    payload = validate_payload(app.current_event.body)
    algorithm, problem_type = model_algorithm(), model_problem_type()  # a misconfigured function calls no endpoint
    endpoint = os.environ["ENDPOINT_NAME"]
    codec = CODECS[algorithm]
    content_type, accept = codec.content_type, codec.accept
    request = csv_rows(payload["instances"], algorithm) if codec.csv_rows else json.dumps(payload)
    try:
        answer = runtime_client().invoke_endpoint(EndpointName=endpoint, ContentType=content_type, Accept=accept, Body=request)
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
        result = answer_for(algorithm, problem_type, body, len(payload["instances"]))
    except BadModelAnswer as error:
        logger.warning("unexpected model answer", extra={"algorithm": algorithm, "problem": str(error), "answer_head": body[:200].decode(errors="replace")})
        return _error(502, "BadModelResponse", f"the model endpoint answered with something the front door cannot read as {algorithm} predictions")
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(result))


# -- speaking the built-in containers' formats ---------------------------------------------------
def csv_rows(instances: list[Any], algorithm: str) -> str:
    """The rows as CSV in feature order for a built-in container: positional rows as sent, records
    ordered by the model description's features. K-Means takes numbers only; Autopilot takes an
    empty cell for a missing value and quoted text for a category."""
    numbers_only = CODECS[algorithm].numbers_only
    description: dict[str, Any] | None = None
    names: list[str] = []
    if any(isinstance(row, dict) for row in instances) or os.environ.get(contract.ENV_DESCRIPTION_URI):
        description, note = model_description()
        if description is not None:
            names = [str(feature["name"]) for feature in description["features"]]
        elif any(isinstance(row, dict) for row in instances):
            raise BadRequest(
                f"send positional rows (values in feature order): records by column name need the model description, and {note[0].lower()}{note[1:]}"
            )
    width = int(description["row_width"]) if description is not None else None
    numeric = [feature["type"] == "number" for feature in description["features"]] if description is not None else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, row in enumerate(instances):
        if isinstance(row, dict):
            unknown = sorted(set(row) - set(names))
            if unknown:
                raise BadRequest(f"instances[{index}] has unknown column(s) {', '.join(map(repr, unknown[:5]))}; this model's columns are {_listed(names)}")
            values = [row.get(name) for name in names]
            places = [f"instances[{index}].{name}" for name in names]
        else:
            values = list(row)
            places = [f"instances[{index}][{column}]" for column in range(len(values))]
            if width is not None and len(values) != width:
                raise BadRequest(f"instances[{index}] has {len(values)} values; this model takes {width} ({_listed(names)})")
        cells = []
        for position, (place, value) in enumerate(zip(places, values, strict=True)):
            if numbers_only and (value is None or isinstance(value, str)):
                shown = "missing (null)" if value is None else f"the string {value[:40]!r}"
                raise BadRequest(f"{place} is {shown}; K-Means takes numbers only: send a number for every feature")
            if isinstance(value, str) and position < len(numeric) and numeric[position]:
                # Autopilot's container answers text in a numeric column with a 500 (decision 0017): say it here.
                raise BadRequest(f"{place} is the string {value[:40]!r}; the column {names[position]!r} takes a number or null")
            cells.append("" if value is None else value if isinstance(value, str) else _number(value))
        writer.writerow(cells)
    return buffer.getvalue()


def _number(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")


class BadModelAnswer(ValueError):
    """The endpoint's answer is not what its container answers; a 502, logged."""


def answer_for(algorithm: str, problem_type: str, body: bytes, rows: int) -> dict[str, Any]:
    """The container's answer in the front door's one shape, one prediction per row."""
    reading = CODECS[algorithm].answer
    if reading == "labels":
        try:
            lines = [line for line in csv.reader(io.StringIO(body.decode("utf-8"))) if line]
        except (UnicodeDecodeError, csv.Error) as error:
            raise BadModelAnswer(f"not CSV: {error}") from None
        if len(lines) != rows:
            raise BadModelAnswer(f"{len(lines)} lines for {rows} rows")
        if _model_openapi().is_regression(problem_type):
            try:
                return {"predictions": [{"value": float(line[0])} for line in lines]}
            except ValueError as error:
                raise BadModelAnswer(f"a regression answer that is not a number: {error}") from None
        return {"predictions": [{"label": line[0]} for line in lines]}
    try:
        result = json.loads(body)
    except ValueError:
        raise BadModelAnswer("not JSON") from None
    if reading == "json":
        if not isinstance(result, dict):
            raise BadModelAnswer("not a JSON object")
        return result
    predictions = result.get("predictions") if isinstance(result, dict) else None
    if not isinstance(predictions, list) or len(predictions) != rows:
        raise BadModelAnswer(f"expected {rows} predictions")
    try:
        return {"predictions": [{"cluster": int(p["closest_cluster"]), "distance": float(p["distance_to_cluster"])} for p in predictions]}
    except (KeyError, TypeError, ValueError) as error:
        raise BadModelAnswer(f"a K-Means prediction without closest_cluster and distance_to_cluster: {error!r}") from None


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
    """The message of a model's 4xx answer when it is short and carries nothing about the deployment;
    else None. Our inference.py answers JSON {"message": ...} describing the client's rows; built-in
    algorithms answer plain text ("unable to evaluate payload provided")."""
    try:
        parsed = json.loads(original)
    except (TypeError, ValueError):  # plain text; markup (an HTML error page) is not a message
        parsed = original.strip() if isinstance(original, str) and not original.lstrip().startswith("<") else None
    message = parsed.get("message") if isinstance(parsed, dict) else parsed
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
