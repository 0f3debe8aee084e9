"""A loopback SageMaker API for the local AutoML jobs: DescribeAutoMLJob and ListCandidatesForAutoMLJob.

evaluate.py reads an Autopilot leaderboard with boto3 the same way on AWS and locally; under the local
runner `AWS_ENDPOINT_URL_SAGEMAKER` points its client here:

    boto3.client("sagemaker") --POST / (JSON 1.1, X-Amz-Target: SageMaker.<Operation>)--> LocalSageMakerApi
                                                                                           jobs from add_automl_job()

The server speaks the protocol botocore's service model describes (`application/x-amz-json-1.1`,
timestamps as epoch seconds, errors as `{"__type", "message"}` with HTTP 400). As SageMaker does, it
verifies each request's SigV4 signature, here by `credentials`, a random pair the runner hands to the
steps it starts; it listens on 127.0.0.1 and checks Host, framing and time as every local server does
(sagelab/local/loopback.py).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from sagelab.local.loopback import LoopbackHandler, LoopbackServer, new_local_credentials, secrets_of, sigv4_problem

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY = 1024 * 1024  # a Describe or List request is a few hundred bytes
TARGET_PREFIX = "SageMaker."
# SageMaker's documented range for ListCandidatesForAutoMLJob.MaxResults; the default page size is not
# documented, 10 is assumed (small enough that a caller which ignores NextToken shows up in tests).
MAX_RESULTS_RANGE = (1, 300)
DEFAULT_MAX_RESULTS = 10
SORT_BY_VALUES = ("CreationTime", "Status", "FinalObjectiveMetricValue")
SORT_ORDER_VALUES = ("Ascending", "Descending")
CANDIDATE_STATUSES = ("Completed", "InProgress", "Failed", "Stopped", "Stopping")
TIMESTAMP_KEYS = frozenset({"CreationTime", "EndTime", "LastModifiedTime"})
# Keys run_automl_job adds for the runner that are no part of SageMaker's response shapes.
LOCAL_ONLY_KEYS = frozenset({"_candidates", "ModelDataPath"})


class ApiError(Exception):
    """An error SageMaker answers with HTTP 400 and `{"__type": code, "message": ...}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _to_wire(value: Any, key: str | None = None) -> Any:
    """The job description as SageMaker sends it: private keys dropped, ISO timestamps as epoch seconds."""
    if isinstance(value, Mapping):
        return {name: _to_wire(item, name) for name, item in value.items() if name not in LOCAL_ONLY_KEYS}
    if isinstance(value, list):
        return [_to_wire(item) for item in value]
    if key in TIMESTAMP_KEYS and isinstance(value, str):
        return dt.datetime.fromisoformat(value).timestamp()
    if key in TIMESTAMP_KEYS and isinstance(value, dt.datetime):
        return value.timestamp()
    return value


class LocalSageMakerApi:
    """`start()` binds 127.0.0.1 on a free port (`url`); `add_automl_job(result)` registers what
    `sagelab.local.automl.run_automl_job` returned; `stop()` shuts down. Also a context manager."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.credentials = new_local_credentials()  # what a step's boto3 signs with (runner: AWS_ACCESS_KEY_ID/...)
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    def add_automl_job(self, result: Mapping[str, Any]) -> None:
        name = result.get("AutoMLJobName")
        if not name or "_candidates" not in result:
            raise ValueError("add_automl_job expects the dict run_automl_job returned: it needs AutoMLJobName and _candidates")
        with self._lock:
            self._jobs[str(name)] = dict(result)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalSageMakerApi is not started: call start() (or use it as a context manager) before reading url")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = LoopbackServer(self._handler_class(), max_body=MAX_BODY)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sagelab-local-sagemaker-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    # -- operations --------------------------------------------------------------------------------

    def _job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = request.get("AutoMLJobName")
        if not isinstance(name, str) or not name:
            raise ApiError(
                "ValidationException", "1 validation error detected: Value null at 'autoMLJobName' failed to satisfy constraint: Member must not be null"
            )
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise ApiError("ResourceNotFound", f"Could not find AutoML job with name {name}")
        return job

    def describe_automl_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        wire: dict[str, Any] = _to_wire(self._job(request))
        return wire

    def list_candidates(self, request: Mapping[str, Any]) -> dict[str, Any]:
        job = self._job(request)
        best = job.get("BestCandidate") or {}
        # run_automl_job keeps the inference container (with the ModelDataUrl the runner filled) on BestCandidate only.
        candidates: list[dict[str, Any]] = [
            {**candidate, "InferenceContainers": best["InferenceContainers"]}
            if candidate.get("CandidateName") == best.get("CandidateName") and "InferenceContainers" in best
            else candidate
            for candidate in job["_candidates"]
        ]
        status = request.get("StatusEquals")
        if status is not None:
            if status not in CANDIDATE_STATUSES:
                raise ApiError(
                    "ValidationException",
                    f"Value '{status}' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: {list(CANDIDATE_STATUSES)}",
                )
            candidates = [candidate for candidate in candidates if candidate.get("CandidateStatus") == status]
        name = request.get("CandidateNameEquals")
        if name is not None:
            candidates = [candidate for candidate in candidates if candidate.get("CandidateName") == name]

        sort_by = request.get("SortBy", "CreationTime")
        sort_order = request.get("SortOrder", "Ascending")
        if sort_by not in SORT_BY_VALUES:
            raise ApiError(
                "ValidationException", f"Value '{sort_by}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: {list(SORT_BY_VALUES)}"
            )
        if sort_order not in SORT_ORDER_VALUES:
            raise ApiError(
                "ValidationException",
                f"Value '{sort_order}' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: {list(SORT_ORDER_VALUES)}",
            )
        candidates = _sorted_candidates(candidates, sort_by, descending=sort_order == "Descending")

        max_results = request.get("MaxResults", DEFAULT_MAX_RESULTS)
        low, high = MAX_RESULTS_RANGE
        if not isinstance(max_results, int) or not low <= max_results <= high:
            raise ApiError(
                "ValidationException", f"Value '{max_results}' at 'maxResults' failed to satisfy constraint: Member must have value between {low} and {high}"
            )
        query = {key: request.get(key) for key in ("AutoMLJobName", "StatusEquals", "CandidateNameEquals", "SortBy", "SortOrder")}
        offset = _offset_from_token(request.get("NextToken"), query)
        page = candidates[offset : offset + max_results]
        response: dict[str, Any] = {"Candidates": _to_wire(page)}
        if offset + max_results < len(candidates):
            response["NextToken"] = _token(offset + max_results, query)
        return response

    def _operations(self) -> dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]]:
        return {"DescribeAutoMLJob": self.describe_automl_job, "ListCandidatesForAutoMLJob": self.list_candidates}

    def _handler_class(self) -> type[LoopbackHandler]:
        api = self

        class Handler(LoopbackHandler):
            def error_payload(self, code: str, message: str) -> dict[str, Any]:
                return {"__type": code, "message": message}

            def do_POST(self) -> None:  # the name http.server dispatches to
                url, headers, secrets = f"http://{self.headers.get('Host', '')}{self.path}", dict(self.headers.items()), secrets_of(api.credentials)
                problem = sigv4_problem("POST", url, headers, None, secrets, service="sagemaker")  # before reading the body
                raw = b""
                if problem is None:
                    raw = self.read_body()
                    problem = sigv4_problem("POST", url, headers, raw, secrets, service="sagemaker")
                if problem is not None:
                    code = "MissingAuthenticationTokenException" if "Authorization" not in self.headers else "InvalidSignatureException"
                    self._answer(HTTPStatus.FORBIDDEN, {"__type": code, "message": problem}, error_type=code)
                    return
                target = self.headers.get("X-Amz-Target", "")
                operation = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else None
                operations = api._operations()
                try:
                    if operation not in operations:
                        raise ApiError(
                            "UnknownOperationException",
                            f"X-Amz-Target {target!r} is not an operation this local SageMaker API answers; it answers {[TARGET_PREFIX + name for name in operations]}",
                        )
                    try:
                        request = json.loads(raw or b"{}")
                    except json.JSONDecodeError as error:
                        raise ApiError("SerializationException", f"the body is not JSON ({error}): expected a {operation} request") from error
                    if not isinstance(request, dict):
                        raise ApiError("SerializationException", f"the body is JSON {type(request).__name__}: expected a {operation} request object")
                    self._answer(HTTPStatus.OK, operations[str(operation)](request))
                except ApiError as error:
                    self._answer(HTTPStatus.BAD_REQUEST, {"__type": error.code, "message": error.message}, error_type=error.code)

            def _answer(self, status: HTTPStatus, payload: Mapping[str, Any], error_type: str | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", JSON_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _sorted_candidates(candidates: list[dict[str, Any]], sort_by: str, descending: bool) -> list[dict[str, Any]]:
    if sort_by == "FinalObjectiveMetricValue":
        # Candidates without an objective value (failed ones) come last in either order.
        scored = [candidate for candidate in candidates if "FinalAutoMLJobObjectiveMetric" in candidate]
        unscored = [candidate for candidate in candidates if "FinalAutoMLJobObjectiveMetric" not in candidate]
        scored.sort(key=lambda candidate: candidate["FinalAutoMLJobObjectiveMetric"]["Value"], reverse=descending)
        return scored + unscored
    key: Callable[[dict[str, Any]], Any]
    if sort_by == "Status":
        key = lambda candidate: candidate.get("CandidateStatus", "")  # noqa: E731 - one-line sort key
    else:
        key = lambda candidate: dt.datetime.fromisoformat(candidate["CreationTime"])  # noqa: E731 - one-line sort key
    # Python's sort is stable, so equal keys keep creation order, as a second key would.
    return sorted(candidates, key=key, reverse=descending)


def _token(offset: int, query: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset, "query": query}, sort_keys=True).encode()).decode()


def _offset_from_token(token: Any, query: Mapping[str, Any]) -> int:
    if token in (None, ""):
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        offset = int(decoded["offset"])
        same_query = decoded["query"] == json.loads(json.dumps(query))
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise ApiError(
            "ValidationException", f"NextToken {str(token)[:40]!r} is not a token this API issued: pass the NextToken of the previous page unchanged"
        ) from error
    if not same_query or offset < 0:
        raise ApiError(
            "ValidationException", "NextToken belongs to a different query: repeat the same AutoMLJobName, filters and sort with the token of the previous page"
        )
    return offset
