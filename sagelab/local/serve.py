"""`sagelab serve`: the deployed serving path, on 127.0.0.1, without AWS or Docker.

client --HTTP--> LocalGateway (:8080)  API key or SigV4 check + request model, like API Gateway;
                     |                   GET /health answered here (API Gateway's MOCK)
                     |  API Gateway proxy event (POST /predict, GET /openapi.json)
                     v
                 runtime/front_door/handler.py   (the same Lambda handler that is deployed, configured
                     |                            from the package's CustomerMetadataProperties)
                     |  boto3 sagemaker-runtime InvokeEndpoint (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME)
                     |  boto3 s3 GetObject of model_description.json (AWS_ENDPOINT_URL_S3)
                     v
                 LocalEndpoint (:8081)  GET /ping, POST /invocations (container contract)
                                        POST /endpoints/<name>/invocations (Runtime API)
                                        GET /<bucket>/<key> (S3 GetObject, path style, read-only,
                                            the keys the deployed front door may read)
                     |
                     v
                 the model's container twin (sagelab/local/containers.py): our inference.py,
                 built-in K-Means or Autopilot, chosen by the registered image
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Self
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from runtime.front_door.build_openapi import health_body
from sagelab.local.containers import Container, ContainerError, ErrorAnswer, ScriptContainer, container_kind, open_container
from sagelab.local.registry import LocalRegistry, ModelPackage

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
REQUEST_SCHEMA = REPO_ROOT / "runtime" / "front_door" / "request_schema.json"
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "us-east-1"
MOCK_ROUTES = {("GET", "/health")}  # answered by the gateway itself
PUBLIC_ROUTES = {("GET", "/openapi.json")}  # to the handler without a key or signature, no request model
ROUTES = {("POST", "/predict"), *MOCK_ROUTES, *PUBLIC_ROUTES}
METHODS_BY_PATH = {path: sorted(m for m, p in ROUTES if p == path) for _, path in ROUTES}
MAX_SIGV4_SKEW_SECONDS = 5 * 60  # API Gateway refuses signatures older (or newer) than 5 minutes
# What the deployed front door's role may read (stacks/front_door.py: s3:GetObject on
# <artifacts bucket>/models/evaluations/*/model_description.json); the local S3 answers the same keys only.
READABLE_S3_KEY = re.compile(r"models/evaluations/.+/model_description\.json")
ALGORITHM_BY_CONTAINER = {"kmeans": "kmeans", "autopilot": "autopilot", "script": "xgboost"}
HANDLER_ENVIRONMENT = (
    "ENDPOINT_NAME",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    "AWS_ENDPOINT_URL_S3",
    "MODEL_ALGORITHM",
    "MODEL_PROBLEM_TYPE",
    "MODEL_DESCRIPTION_URI",
)
# What the model's container logs (CloudWatch on AWS): the detail behind an error answer.
container_log = logging.getLogger("sagelab.endpoint.container")


class ServeError(RuntimeError):
    """The model cannot be served; the message says why and what to do."""


# -- the model ------------------------------------------------------------------------------------
@dataclass
class ServedModel:
    """A registered version in the local twin of its serving container (sagelab/local/containers.py)."""

    package: ModelPackage
    container: Container

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        return self.container.invoke(body, content_type, accept)

    @property
    def module(self) -> ModuleType:
        """Our inference.py (XGBoost and custom models only)."""
        return self._script().module

    @property
    def model(self) -> Any:
        """What inference.py's model_fn loaded (XGBoost and custom models only)."""
        return self._script().model

    def _script(self) -> ScriptContainer:
        if not isinstance(self.container, ScriptContainer):
            raise ServeError(f"{self.package.group} version {self.package.version} serves from {self.package.image}, not our inference.py")
        return self.container


def select_package(workdir: Path, group: str | None = None, version: int | None = None) -> ModelPackage:
    """The version to serve: the one named, or the latest approved."""
    registry = LocalRegistry(workdir)
    if version is not None:
        if group is None:
            raise ServeError("--version needs --group")
        return registry.get(group, version)
    latest = registry.latest_approved(group)
    if latest is None:
        known = registry.versions(group) if group or registry.groups() else []
        hint = (
            f" (pending: {', '.join(f'{p.group} {p.version}' for p in known)}; approve one with `sagelab models approve GROUP VERSION`)"
            if known
            else " (run `sagelab run` first)"
        )
        raise ServeError(f"no approved model in {registry.root}{hint}")
    return latest


def load_served_model(workdir: Path, group: str | None = None, version: int | None = None, scratch: Path | None = None) -> ServedModel:
    """Unpack a registered version like SageMaker does (model.tar.gz into a model dir) and open the
    container its image names: our inference.py, the built-in K-Means twin or the Autopilot twin."""
    package = select_package(workdir, group, version)
    model_dir = Path(scratch or tempfile.mkdtemp(prefix="sagelab-serve-")) / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(package.model_data_path) as tar:
        tar.extractall(model_dir, filter="data")
    try:
        container = open_container(package.image, model_dir, package.environment, s3_root=Path(workdir) / "s3")
    except ContainerError as error:
        raise ServeError(f"{package.group} version {package.version}: {error}") from None
    return ServedModel(package=package, container=container)


# -- HTTP helpers ---------------------------------------------------------------------------------
class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the peer's
    # delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, oversized headers) in JSON, not HTML."""
        self.close_connection = True
        status = HTTPStatus(code) if code in HTTPStatus._value2member_map_ else HTTPStatus.BAD_REQUEST
        body = json.dumps({"error": status.phrase.replace(" ", ""), "message": message or status.description}).encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":  # a HEAD answer has the headers of a GET and no body
        handler.wfile.write(body)


def _read_body(handler: BaseHTTPRequestHandler, limit: int) -> bytes | None:
    """The request body, or None when it is over `limit` (the connection is then closed, so an
    unread body can never be mistaken for the next request on a kept-alive connection)."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length > limit:
        handler.close_connection = True
        return None
    return handler.rfile.read(length) if length else b""


# -- the local endpoint -------------------------------------------------------------------------------
class _LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 served from a daemon thread."""

    server: ThreadingHTTPServer
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    # How often serve_forever checks for shutdown: stop() waits up to this long (the default 0.5 s
    # made every start/stop of the local servers, in tests and the lab, cost a second).
    POLL_INTERVAL_S = 0.05

    def start(self) -> Self:
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": self.POLL_INTERVAL_S}, name=f"sagelab-{type(self).__name__}", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LocalEndpoint(_LocalServer):
    """A real HTTP server speaking the container contract and the SageMaker Runtime API."""

    def __init__(
        self,
        served: ServedModel | None,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoint_name: str = "sagelab-dev-endpoint",
        *,
        s3_root: Path | None = None,
    ) -> None:
        self.served = served
        self.endpoint_name = endpoint_name
        self.s3_root = Path(s3_root) if s3_root is not None else None
        outer = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/ping":
                    status = HTTPStatus.OK if outer.served else HTTPStatus.SERVICE_UNAVAILABLE
                    _send(self, status, b"" if outer.served else b'{"message": "no model loaded"}')
                    return
                if outer.s3_root is not None and self.path.count("/") >= 2:
                    outer._get_object(self)
                    return
                _send(self, 404, b'{"message": "not found"}')

            def do_POST(self) -> None:
                runtime_api = self.path.startswith("/endpoints/") and self.path.endswith("/invocations")
                body = _read_body(self, 6 * 1024 * 1024)
                if self.path != "/invocations" and not runtime_api:
                    _send(self, 404, b'{"message": "not found"}')
                    return
                if body is None:
                    outer._error(self, runtime_api, 413, "ValidationError", "payload over 6 MB")
                    return
                if outer.served is None:
                    name = self.path.split("/")[2] if runtime_api else outer.endpoint_name
                    outer._error(self, runtime_api, 400, "ValidationError", f"Endpoint {name} of account {LOCAL_ACCOUNT} not found.")
                    return
                content_type = self.headers.get("Content-Type", "application/json")
                accept = self.headers.get("Accept", "application/json")
                try:
                    answer, produced = outer.served.invoke(body, content_type, accept)
                except ErrorAnswer as refused:  # the container's own answer: its status, body and type
                    outer._model_error(self, runtime_api, refused)
                    return
                headers = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"} if runtime_api else {}
                _send(self, 200, answer, produced, headers)

        self.server = _QuietServer((host, port), Handler)

    def _get_object(self, handler: BaseHTTPRequestHandler) -> None:
        """S3 GetObject, path style (`GET /<bucket>/<key>`), from `<s3_root>/<bucket>/<key>`: only the
        keys the deployed front door's role may read; errors in S3's XML so botocore names them."""
        assert self.s3_root is not None
        bucket, _, key = unquote(handler.path.split("?", 1)[0].lstrip("/")).partition("/")
        if not bucket or ".." in Path(key).parts or not READABLE_S3_KEY.fullmatch(key):
            _s3_error(handler, 403, "AccessDenied", "Access Denied")
            return
        path = self.s3_root / bucket / key
        if not path.is_file():
            _s3_error(handler, 404, "NoSuchKey", "The specified key does not exist.")
            return
        _send(handler, 200, path.read_bytes(), "application/json")

    def _error(self, handler: BaseHTTPRequestHandler, runtime_api: bool, status: int, code: str, message: str) -> None:
        headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/"} if runtime_api else {}
        _send(handler, status, json.dumps({"message": message}).encode(), headers=headers)

    def _model_error(self, handler: BaseHTTPRequestHandler, runtime_api: bool, refused: ErrorAnswer) -> None:
        container_log.warning("model answered %s: %s", refused.status, refused.detail or refused.body[:500])
        if not runtime_api:  # the container contract: the container's own status and body
            _send(handler, refused.status, refused.body, refused.content_type)
            return
        # The Runtime API wraps a container error as ModelError (424), keeping the original
        # (botocore's sagemaker-runtime ModelError shape: Message, OriginalStatusCode, OriginalMessage).
        original = refused.body.decode("utf-8", errors="replace")
        kind = "client" if refused.status < 500 else "server"
        body = {
            "message": f'Received {kind} error ({refused.status}) from primary with message "{original}".',
            "OriginalStatusCode": refused.status,
            "OriginalMessage": original,
        }
        _send(handler, 424, json.dumps(body).encode(), headers={"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"})


def _s3_error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    _send(handler, status, body.encode(), "application/xml")


# -- the local gateway ----------------------------------------------------------------------------------
@dataclass
class LambdaContextStandIn:
    """What the Lambda runtime passes as `context` (attributes Powertools reads)."""

    function_name: str = "sagelab-local-front-door"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT}:function:sagelab-local-front-door"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/sagelab-local-front-door"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def model_environment(package: ModelPackage | None) -> dict[str, str]:
    """What the serving stack gives the deployed function from the package's CustomerMetadataProperties
    (the approval deployer's parameters); a version registered without them is served by its image's kind."""
    if package is None:
        return {"MODEL_ALGORITHM": "xgboost", "MODEL_PROBLEM_TYPE": "", "MODEL_DESCRIPTION_URI": ""}
    metadata = package.customer_metadata
    return {
        "MODEL_ALGORITHM": metadata.get("sagelab:algorithm") or ALGORITHM_BY_CONTAINER[container_kind(package.image)],
        "MODEL_PROBLEM_TYPE": metadata.get("sagelab:problem-type", ""),
        "MODEL_DESCRIPTION_URI": metadata.get("sagelab:model-description", ""),
    }


def configure_handler_environment(endpoint_url: str, endpoint_name: str, model: Mapping[str, str] | None = None) -> None:
    """What the deployed function gets from its configuration, pointed at the local endpoint (which
    also answers S3 GetObject for the model description)."""
    os.environ["ENDPOINT_NAME"] = endpoint_name
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = endpoint_url
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint_url
    for key, value in (model or {}).items():
        os.environ[key] = value
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "sagelab-local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "sagelab-local")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def load_handler(endpoint_url: str, endpoint_name: str, model: Mapping[str, str] | None = None) -> ModuleType:
    configure_handler_environment(endpoint_url, endpoint_name, model)
    import runtime.front_door.handler as handler

    # The handler builds its clients on first use; point them at this endpoint (tests start several
    # servers in one process, and the module is a process-wide singleton as in Lambda). A new model
    # is a new execution environment: its description is read again.
    handler._runtime = handler.build_runtime_client(endpoint_url)
    handler._s3 = handler.build_s3_client(endpoint_url)
    handler._description = None
    return handler


# -- what API Gateway checks before the Lambda runs -----------------------------------------------
@cache
def _request_model() -> Any:
    import jsonschema

    return jsonschema.Draft4Validator(json.loads(REQUEST_SCHEMA.read_text()))


@cache
def _fast_request_model() -> Callable[[Any], bool]:
    """The same model compiled to Python code (fastjsonschema, as the Lambda does): a valid
    1,000-row batch passes in a few milliseconds instead of ~200 ms; only a body that fails is
    walked again by jsonschema, whose error names the path as API Gateway's does."""
    import fastjsonschema

    validate = fastjsonschema.compile(json.loads(REQUEST_SCHEMA.read_text()))

    def passes(payload: Any) -> bool:
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return passes


def request_model_problem(text: str) -> str | None:
    """API Gateway's request validator: the body against the request model (draft-04); None if it passes."""
    try:
        payload = json.loads(text, parse_constant=lambda name: float("nan"))
    except RecursionError:
        return "invalid request body: nested too deeply"
    except ValueError:
        return None  # not JSON: the model validator lets the Lambda name the problem
    if _fast_request_model()(payload):
        return None
    errors = sorted(_request_model().iter_errors(payload), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path) or "body"
    return f"invalid request body: {where.lstrip('.')}: {first.message}"


_SIGV4_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)


def sigv4_problem(method: str, url: str, headers: Mapping[str, str], body: bytes, secrets: Mapping[str, str], now: datetime | None = None) -> str | None:
    """Why a request's SigV4 signature (service execute-api) does not verify, or None if it does.
    The signature is recomputed with botocore's signer over the headers the client says it signed."""
    lower = {name.lower(): value for name, value in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        return "missing Authorization header: sign the request with SigV4 (sagelab predict --iam)"
    match = _SIGV4_AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        return "the Authorization header is not an AWS4-HMAC-SHA256 signature"
    secret = secrets.get(match["key"])
    if secret is None:
        return "the security token included in the request is invalid (unknown access key)"
    if match["service"] != "execute-api" or match["region"] != LOCAL_REGION:
        return f"credential scope must be {LOCAL_REGION}/execute-api, not {match['region']}/{match['service']}"
    signed = match["signed"].split(";")
    amz_date = lower.get("x-amz-date", "")
    if "host" not in signed or "x-amz-date" not in signed or any(name not in lower for name in signed):
        return "SignedHeaders must include host and x-amz-date, and every signed header must be sent"
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "X-Amz-Date is not a SigV4 timestamp (YYYYMMDDTHHMMSSZ)"
    if abs(((now or datetime.now(UTC)) - signed_at).total_seconds()) > MAX_SIGV4_SKEW_SECONDS or amz_date[:8] != match["date"]:
        return "signature expired or from the future: X-Amz-Date must be within 5 minutes of now"
    request = AWSRequest(method=method, url=url, data=body, headers={name: lower[name] for name in signed})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key"], secret, lower.get("x-amz-security-token")), "execute-api", match["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "the request signature does not match: check the secret key and sign exactly the request sent"
    return None


class LocalGateway(_LocalServer):
    """API Gateway's part, locally: routes, API key or SigV4 (IAM auth), the request model, the
    MOCK answers of GET /health and /openapi.json, proxy events to the handler for POST /predict.

    `iam_credentials` (access key id -> secret key) switches POST /predict from API keys to IAM
    auth, as `serving.auth: iam` does in the stack: a request must carry a valid SigV4 signature."""

    def __init__(
        self,
        handler_module: ModuleType,
        api_key: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        endpoint_name: str = "sagelab-dev-endpoint",
        iam_credentials: Mapping[str, str] | None = None,
    ) -> None:
        if api_key is None and iam_credentials is None:
            raise ValueError("LocalGateway needs an api_key or iam_credentials")
        self.handler_module = handler_module
        self.api_key = api_key
        self.iam_credentials = dict(iam_credentials) if iam_credentials is not None else None
        self.mock_bodies = {"/health": health_body(endpoint_name).encode()}
        _request_model()  # build it now, not on the first request
        outer = self

        class Handler(_QuietHandler):
            def __getattr__(self, name: str) -> Any:
                # http.server looks up do_<METHOD>; every method reaches the router, which answers
                # undeclared ones with a JSON 405 rather than http.server's HTML 501.
                if name.startswith("do_"):
                    return lambda: outer._handle(self, name[3:])
                raise AttributeError(name)

        self.server = _QuietServer((host, port), Handler)

    def _gateway_error(self, request: BaseHTTPRequestHandler, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"error": code, "message": message, "requestId": str(uuid.uuid4())}
        _send(request, status, json.dumps(body).encode(), headers=headers)

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        raw = _read_body(request, API_GATEWAY_MAX_BODY)  # always consume the body first
        if raw is None:
            self._gateway_error(request, 413, "PayloadTooLarge", f"the body is over {API_GATEWAY_MAX_BODY} bytes")
            return
        if path not in METHODS_BY_PATH:
            self._gateway_error(request, 404, "NotFound", f"no route {method} {path}; see GET /openapi.json")
            return
        if (method, path) not in ROUTES:
            allowed = ", ".join(METHODS_BY_PATH[path])
            self._gateway_error(request, 405, "MethodNotAllowed", f"{path} answers {allowed}, not {method}", {"Allow": allowed})
            return
        if (method, path) in MOCK_ROUTES:
            _send(request, 200, self.mock_bodies[path])
            return
        text = raw.decode("utf-8", errors="replace")
        if (method, path) not in PUBLIC_ROUTES:
            problem = self._auth_problem(request, method, raw)
            if problem:
                self._gateway_error(request, 403, "Forbidden", problem)
                return
            problem = request_model_problem(text)
            if problem:
                self._gateway_error(request, 400, "BadRequest", problem)
                return
        event = self._event(request, method, path, text)
        context = LambdaContextStandIn(aws_request_id=str(uuid.uuid4()))
        response = self.handler_module.lambda_handler(event, context)
        # A REST proxy response may carry headers in either map; API Gateway merges them.
        merged = {**(response.get("headers") or {}), **{k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}}
        headers = {k: v for k, v in merged.items() if k.lower() not in ("content-length",)}
        content_type = headers.pop("Content-Type", "application/json")
        body = response.get("body") or ""
        _send(request, int(response["statusCode"]), body.encode() if isinstance(body, str) else body, content_type, headers)

    def _auth_problem(self, request: BaseHTTPRequestHandler, method: str, raw: bytes) -> str | None:
        if self.iam_credentials is not None:
            url = f"http://{request.headers.get('Host', '')}{request.path}"
            return sigv4_problem(method, url, dict(request.headers.items()), raw, self.iam_credentials)
        if request.headers.get("x-api-key") != self.api_key:
            return "missing or unknown API key; send it in the x-api-key header"
        return None

    def _event(self, request: BaseHTTPRequestHandler, method: str, path: str, body: str) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        headers = dict(request.headers.items())
        identity: dict[str, Any] = {"sourceIp": request.client_address[0]}
        if self.iam_credentials is not None:
            match = _SIGV4_AUTHORIZATION.match(headers.get("Authorization", ""))
            identity.update(accessKey=match["key"] if match else None, accountId=LOCAL_ACCOUNT)
        else:
            identity["apiKey"] = headers.get("x-api-key")
        return {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": path,
                "httpMethod": method,
                "path": f"/prod{path}",
                "stage": "prod",
                "requestId": request_id,
                "accountId": LOCAL_ACCOUNT,
                "apiId": "local",
                "identity": identity,
            },
            "body": body or None,
            "isBase64Encoded": False,
        }


@contextlib.contextmanager
def serving(
    workdir: Path,
    api_key: str,
    port: int = 0,
    endpoint_port: int = 0,
    group: str | None = None,
    version: int | None = None,
    endpoint_name: str = "sagelab-dev-endpoint",
    require_model: bool = True,
    iam_credentials: Mapping[str, str] | None = None,
) -> Iterator[tuple[LocalGateway, LocalEndpoint]]:
    """Start both servers (ephemeral ports by default); stop them on exit. With `iam_credentials`
    the gateway requires SigV4 instead of the API key (`serving.auth: iam`)."""
    try:
        served: ServedModel | None = load_served_model(workdir, group, version)
    except ServeError:
        if require_model:
            raise
        served = None
    endpoint = LocalEndpoint(served, port=endpoint_port, endpoint_name=endpoint_name, s3_root=Path(workdir) / "s3").start()
    gateway = None
    # The handler module is a process-wide singleton, as in Lambda; a nested `serving()` (tests)
    # must hand the previous configuration back when it ends.
    saved_env = {k: os.environ.get(k) for k in HANDLER_ENVIRONMENT}
    previous_module = sys.modules.get("runtime.front_door.handler")
    previous_state = {name: getattr(previous_module, name, None) for name in ("_runtime", "_s3", "_description")}
    try:
        handler = load_handler(endpoint.url, endpoint_name, model_environment(served.package if served else None))
        gateway = LocalGateway(handler, api_key, port=port, endpoint_name=endpoint_name, iam_credentials=iam_credentials).start()
        yield gateway, endpoint
    finally:
        if gateway is not None:
            gateway.stop()
        endpoint.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if previous_module is not None:
            for name, value in previous_state.items():
                setattr(previous_module, name, value)
