"""`sagelab serve`: the deployed serving path, on 127.0.0.1, without AWS or Docker.

client --HTTP--> LocalGateway (:8080)  API key or SigV4 check + request model, like API Gateway;
                     |                   GET /health answered here (API Gateway's MOCK)
                     |  API Gateway proxy event (POST /predict, GET /openapi.json)
                     v
                 stacks/front_door/runtime/handler.py   (the same Lambda handler that is deployed, configured
                     |                            from the package's CustomerMetadataProperties)
                     |  boto3 sagemaker-runtime InvokeEndpoint (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME)
                     |  boto3 s3 GetObject of model_description.json (AWS_ENDPOINT_URL_S3)
                     v
                 LocalEndpoint (:8081)  GET /ping, POST /invocations (container contract)
                                        POST /endpoints/<name>/invocations (Runtime API)
                                        GET /<bucket>/<key> (S3 GetObject, path style, read-only,
                                            the keys the deployed front door may read)
                                        PUT /<bucket>/data-capture/front-door/... (S3 PutObject: the
                                            front door's data capture, sagelab/local/monitor.py)
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
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any, Self
from urllib.parse import unquote
from xml.sax.saxutils import escape as xml_escape

from botocore.credentials import Credentials

from pipeline_steps import contract
from sagelab import algorithms
from sagelab.local.containers import Container, ContainerError, ErrorAnswer, ScriptContainer, container_type, open_container
from sagelab.local.loopback import (
    LOCAL_REGION,
    SIGV4_AUTHORIZATION,
    LoopbackHandler,
    LoopbackServer,
    new_local_credentials,
    secrets_of,
    sigv4_problem,
)
from sagelab.local.monitor import CAPTURE_ENVIRONMENT, capture_environment, write_capture
from sagelab.local.registry import LocalRegistry, ModelPackage
from sagelab.local.s3_paths import S3PathError, bucket_problem, object_path, split_uri
from stacks.front_door.build_openapi import REQUEST_SCHEMA, health_body

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
ENDPOINT_MAX_BODY = 6 * 1024 * 1024  # InvokeEndpoint's payload limit
LOCAL_ACCOUNT = "000000000000"
MOCK_ROUTES = {("GET", "/health")}  # answered by the gateway itself
# To the handler with /predict's key or signature (it describes the served model's training
# values), without a request model.
DESCRIBE_ROUTES = {("GET", "/openapi.json")}
ROUTES = {("POST", "/predict"), *MOCK_ROUTES, *DESCRIBE_ROUTES}
METHODS_BY_PATH = {path: sorted(m for m, p in ROUTES if p == path) for _, path in ROUTES}
# What the deployed front door's role may read (stacks/front_door/construct.py: s3:GetObject on
# <artifacts bucket>/models/evaluations/*/model_description.json); the local S3 answers the same keys only.
READABLE_S3_KEY = re.compile(contract.DESCRIPTION_KEY_PATTERN)
HANDLER_ENVIRONMENT = (
    "ENDPOINT_NAME",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    "AWS_ENDPOINT_URL_S3",
    contract.ENV_ALGORITHM,
    contract.ENV_PROBLEM_TYPE,
    contract.ENV_DESCRIPTION_URI,
    *CAPTURE_ENVIRONMENT,
)
# What the model's container logs (CloudWatch on AWS): the detail behind an error answer.
container_log = logging.getLogger("sagelab.endpoint.container")


class ServeError(RuntimeError):
    """The model cannot be served; the message says why and what to do."""


# -- the model ------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A registered version loaded into the local twin of its serving container (sagelab/local/containers.py);
    not stacks.front_door.construct.ServedModelSettings, which is what the front door is told about the model."""

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


def load_served_model(workdir: Path, group: str | None = None, version: int | None = None, scratch: Path | None = None) -> LoadedModel:
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
    return LoadedModel(package=package, container=container)


# -- HTTP helpers ---------------------------------------------------------------------------------
def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":  # a HEAD answer has the headers of a GET and no body
        handler.wfile.write(body)


# -- the local endpoint -------------------------------------------------------------------------------
class _LocalServer:
    """A LoopbackServer (sagelab/local/loopback.py: 127.0.0.1 only, Host checked, bounded) served from a daemon thread."""

    server: LoopbackServer
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
        self.server.close_connections()


class LocalEndpoint(_LocalServer):
    """A real HTTP server speaking the container contract and the SageMaker Runtime API.

    Every request must carry a SigV4 signature by `credentials` (a random pair per endpoint unless
    given): service `sagemaker` for the Runtime API and the container contract, `s3` for GetObject,
    as AWS requires for InvokeEndpoint and GetObject. The gateway's handler signs with them; a web
    page or another user of this machine cannot."""

    def __init__(
        self,
        served: LoadedModel | None,
        port: int = 0,
        endpoint_name: str = "sagelab-dev--endpoint",
        *,
        s3_root: Path | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.served = served
        self.endpoint_name = endpoint_name
        self.s3_root = Path(s3_root) if s3_root is not None else None
        self.credentials = credentials or new_local_credentials()
        outer = self

        class Handler(LoopbackHandler):
            def do_PUT(self) -> None:
                # S3 PutObject of a capture record, signed like every S3 call of the handler.
                body = outer._signed_body(self, "s3")
                if body is not None:
                    write_capture(self, outer.s3_root, body)

            def do_GET(self) -> None:
                s3_request = self.path != "/ping" and self.path.count("/") >= 2
                if outer._signed_body(self, "s3" if s3_request else "sagemaker") is None:
                    return
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
                body = outer._signed_body(self, "sagemaker")
                if body is None:
                    return
                if self.path != "/invocations" and not runtime_api:
                    _send(self, 404, b'{"message": "not found"}')
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

        self.server = LoopbackServer(Handler, port, max_body=ENDPOINT_MAX_BODY)

    def _signed_body(self, handler: LoopbackHandler, service: str) -> bytes | None:
        """The body, once the request's signature by this endpoint's credentials verifies over it;
        None after answering 403 (S3's XML for `s3`, the Runtime API's JSON otherwise)."""
        url = f"http://{handler.headers.get('Host', '')}{handler.path}"
        headers, secrets = dict(handler.headers.items()), secrets_of(self.credentials)
        problem = sigv4_problem(handler.command, url, headers, None, secrets, service=service)  # before reading the body
        body = b""
        if problem is None:
            body = handler.read_body()
            problem = sigv4_problem(handler.command, url, headers, body, secrets, service=service)
        if problem is None:
            return body
        if service == "s3":
            _s3_error(handler, 403, "AccessDenied", problem)
        else:
            code = "MissingAuthenticationTokenException" if "authorization" not in {name.lower() for name in headers} else "InvalidSignatureException"
            self._error(handler, True, 403, code, problem)
        return None

    def _get_object(self, handler: BaseHTTPRequestHandler) -> None:
        """S3 GetObject, path style (`GET /<bucket>/<key>`), from `<s3_root>/<bucket>/<key>`: only the
        keys the deployed front door's role may read; errors in S3's XML so botocore names them."""
        assert self.s3_root is not None
        bucket, _, key = unquote(handler.path.split("?", 1)[0].removeprefix("/")).partition("/")
        problem = bucket_problem(bucket)
        if problem:
            _s3_error(handler, 400, "InvalidBucketName", problem)
            return
        try:
            path = object_path(self.s3_root, bucket, key)
        except S3PathError:
            path = None
        if path is None or not READABLE_S3_KEY.fullmatch(key):
            _s3_error(handler, 403, "AccessDenied", "Access Denied")
            return
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
        side = "client" if refused.status < 500 else "server"
        body = {
            "message": f'Received {side} error ({refused.status}) from primary with message "{original}".',
            "OriginalStatusCode": refused.status,
            "OriginalMessage": original,
        }
        _send(handler, 424, json.dumps(body).encode(), headers={"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"})


def _s3_error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{xml_escape(message)}</Message></Error>'
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
    """What the serving stack gives the deployed function: the contract's serving settings from the
    package's CustomerMetadataProperties, checked as the approval deployer checks them (the artifacts
    bucket is, locally, the one the model was written to); a version registered without them is
    served as its image's twin's algorithm."""
    if package is None:
        return contract.ServingSettings(contract.DEFAULT_ALGORITHM).environment()
    artifacts_bucket = split_uri(package.model_data_url)[0] if package.model_data_url.startswith("s3://") else ""
    try:
        settings = contract.serving_settings(package.customer_metadata, artifacts_bucket, algorithms.served_as(container_type(package.image)))
    except contract.UnservableModel as error:
        raise ServeError(f"model package {package.group}/{package.version} is not served: {error}") from error
    for reason in settings.dropped:
        container_log.warning("%s", reason)
    return settings.environment()


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


def load_handler(endpoint_url: str, endpoint_name: str, model: Mapping[str, str] | None = None, *, credentials: Credentials) -> ModuleType:
    """The handler module, its clients pointed at the local endpoint and signing with `credentials`
    (the endpoint's: as the deployed function's role signs InvokeEndpoint and GetObject)."""
    configure_handler_environment(endpoint_url, endpoint_name, model)
    import boto3

    import stacks.front_door.runtime.handler as handler
    from sagelab.aws_session import new_session

    # The handler builds its clients on first use; point them at this endpoint (tests start several
    # servers in one process, and the module is a process-wide singleton as in Lambda). A new model
    # is a new execution environment: its description is read again. The handler's builders use
    # boto3's default session: one holding the endpoint's credentials stands in while they run.
    previous_session = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = new_session(aws_access_key_id=credentials.access_key, aws_secret_access_key=credentials.secret_key, region_name=LOCAL_REGION)
    try:
        handler._runtime = handler.build_runtime_client(endpoint_url)
        handler._s3 = handler.build_s3_client(endpoint_url)
    finally:
        boto3.DEFAULT_SESSION = previous_session
    handler._description = None
    return handler


# -- what API Gateway checks before the Lambda runs -----------------------------------------------
@dataclass(frozen=True)
class _RequestModel:
    """The request model (draft-04), read once and held three ways. `passes` is it compiled to
    Python code (fastjsonschema, as the Lambda does): a valid 1,000-row batch passes in a few
    milliseconds instead of ~200 ms. Only a body that fails is walked again by jsonschema, whose
    error names the path as API Gateway's does, with the model in two parts: `body`, without
    `instances.items` (every error at the body or at `instances`), and `row`, `instances.items` (a
    row's errors). A failing body is walked up to its first failing row: a 1,001-row body is
    refused at `instances` without validating 1,001 rows (~200 ms), and the answer is the one the
    whole model's first error by path gives."""

    passes: Callable[[Any], bool]
    body: Any  # jsonschema.Draft4Validator
    row: Any  # jsonschema.Draft4Validator


@cache
def _request_model() -> _RequestModel:
    import fastjsonschema
    import jsonschema

    schema = json.loads(REQUEST_SCHEMA.read_text())
    validate = fastjsonschema.compile(schema)

    def passes(payload: Any) -> bool:
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    instances = dict(schema["properties"]["instances"])  # a copy: `schema` stays the whole model
    row = instances.pop("items")
    body = {**schema, "properties": {**schema["properties"], "instances": instances}}
    return _RequestModel(passes, jsonschema.Draft4Validator(body), jsonschema.Draft4Validator({"$schema": schema["$schema"], **row}))


def request_model_problem(text: str) -> str | None:
    """API Gateway's request validator: the body against the request model (draft-04); None if it passes."""
    try:
        payload = json.loads(text, parse_constant=lambda name: float("nan"))
    except RecursionError:
        return "invalid request body: nested too deeply"
    except ValueError:
        return None  # not JSON: the model validator lets the Lambda name the problem
    model = _request_model()
    if model.passes(payload):
        return None
    # The first error by path (a shorter path first; rows in order): the body's and `instances`'s own
    # errors come before any row's, and an earlier row's before a later one's.
    errors = sorted(model.body.iter_errors(payload), key=lambda e: list(e.absolute_path))
    prefix: list[Any] = []
    if not errors:  # the body is an object whose `instances` is an array of 1 to 1,000 rows
        for number, row in enumerate(payload["instances"]):
            errors = sorted(model.row.iter_errors(row), key=lambda e: list(e.absolute_path))
            if errors:
                prefix = ["instances", number]
                break
    if not errors:
        return None
    first = errors[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in [*prefix, *first.absolute_path]) or "body"
    return f"invalid request body: {where.lstrip('.')}: {first.message}"


class LocalGateway(_LocalServer):
    """API Gateway's part, locally: routes, API key or SigV4 (IAM auth), the request model, the
    MOCK answer of GET /health, proxy events to the handler for POST /predict and GET /openapi.json.

    `iam_credentials` (access key id -> secret key) switches both from API keys to IAM auth, as
    `serving.auth: iam` does in the stack: a request must carry a valid SigV4 signature."""

    def __init__(
        self,
        handler_module: ModuleType,
        api_key: str | None,
        port: int = 0,
        *,
        endpoint_name: str = "sagelab-dev--endpoint",
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

        class Handler(LoopbackHandler):
            def __getattr__(self, name: str) -> Any:
                # http.server looks up do_<METHOD>; every method reaches the router, which answers
                # undeclared ones with a JSON 405 rather than http.server's HTML 501.
                if name.startswith("do_"):
                    return lambda: outer._handle(self, name[3:])
                raise AttributeError(name)

        self.server = LoopbackServer(Handler, port, max_body=API_GATEWAY_MAX_BODY)

    def _gateway_error(self, request: BaseHTTPRequestHandler, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"error": code, "message": message, "requestId": str(uuid.uuid4())}
        _send(request, status, json.dumps(body).encode(), headers=headers)

    def _handle(self, request: LoopbackHandler, method: str) -> None:
        # Host, framing and the 10 MB cap are checked before this runs (sagelab/local/loopback.py);
        # the body is read only once the route and the key (or the signature's headers) pass.
        path = request.path.split("?", 1)[0]
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
        problem = self._auth_problem(request, method, None)
        raw = b"" if problem else request.read_body()
        if not problem:
            problem = self._auth_problem(request, method, raw)
        if problem:
            self._gateway_error(request, 403, "Forbidden", problem)
            return
        text = raw.decode("utf-8", errors="replace")
        if (method, path) not in DESCRIBE_ROUTES:
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

    def _auth_problem(self, request: BaseHTTPRequestHandler, method: str, raw: bytes | None) -> str | None:
        """Why the request is not authorized, or None. `raw` None: from the headers alone (the
        signature's body hash is checked once the body is read)."""
        if self.iam_credentials is not None:
            url = f"http://{request.headers.get('Host', '')}{request.path}"
            return sigv4_problem(method, url, dict(request.headers.items()), raw, self.iam_credentials)
        sent = (request.headers.get("x-api-key") or "").encode("latin-1")  # http.server decoded the bytes as latin-1
        if self.api_key is None or not hmac.compare_digest(sent, self.api_key.encode()):
            return "missing or unknown API key; send it in the x-api-key header"
        return None

    def _event(self, request: BaseHTTPRequestHandler, method: str, path: str, body: str) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        headers = dict(request.headers.items())
        identity: dict[str, Any] = {"sourceIp": request.client_address[0]}
        if self.iam_credentials is not None:
            match = SIGV4_AUTHORIZATION.match(headers.get("Authorization", ""))
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
    endpoint_name: str = "sagelab-dev--endpoint",
    require_model: bool = True,
    iam_credentials: Mapping[str, str] | None = None,
    capture_percent: int = 0,
) -> Iterator[tuple[LocalGateway, LocalEndpoint]]:
    """Start both servers (ephemeral ports by default); stop them on exit. With `iam_credentials`
    the gateway requires SigV4 instead of the API key (`serving.auth: iam`)."""
    try:
        served: LoadedModel | None = load_served_model(workdir, group, version)
    except ServeError:
        if require_model:
            raise
        served = None
    endpoint = LocalEndpoint(served, port=endpoint_port, endpoint_name=endpoint_name, s3_root=Path(workdir) / "s3").start()
    gateway = None
    # The handler module is a process-wide singleton, as in Lambda; a nested `serving()` (tests)
    # must hand the previous configuration back when it ends.
    saved_env = {k: os.environ.get(k) for k in HANDLER_ENVIRONMENT}
    previous_module = sys.modules.get("stacks.front_door.runtime.handler")
    previous_state = {name: getattr(previous_module, name, None) for name in ("_runtime", "_s3", "_description")}
    try:
        model = model_environment(served.package if served else None)
        handler = load_handler(endpoint.url, endpoint_name, {**model, **capture_environment(model, capture_percent)}, credentials=endpoint.credentials)
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
