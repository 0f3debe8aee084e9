"""The release's acceptance test: ONE piece of code, run by the release pipeline's test action
(stacks/release/runtime/handler.py, against a stage's API Gateway) and by `sagelab release` (against the
local gateway). Standard library only, so the Lambda needs no layer.

A stage passes when its front door
  - answers GET /health with 200,
  - scores the registered evaluation's test rows within `tolerance` of the registered metric
    (one-sided: a better score passes),
  - answers single-row requests within `latency_p95_ms` at the 95th percentile,
  - refuses a malformed request with a 4xx and a JSON body (never a 5xx).

Evidence (what the version promises) comes from the registry: the gated metric of
`evaluation.json`'s `sagelab_summary`, and the test split preprocess wrote for the run that trained
the version (`pipeline-runs/<execution>/preprocess/{test,spec}/`).
"""

from __future__ import annotations

import ast
import json
import math
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

try:  # the function's code has the contract module at its root (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the repository: tests, the local twins
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]

CLASSIFICATION = tuple(t for t, family in contract.PROBLEM_FAMILIES.items() if family == contract.CLASSIFICATION)
# What the test can score from the front door's answers, per problem type: (metric, comparison).
SCORED_METRIC = {contract.BINARY: ("accuracy", ">="), contract.MULTICLASS: ("accuracy", ">="), contract.REGRESSION: ("rmse", "<=")}
BATCH_ROWS = 100  # rows per /predict request while scoring (well under API Gateway's 10 MB)
LATENCY_SAMPLES = 20
BAD_REQUEST = b'{"instances": "not rows"}'


class EvidenceError(ValueError):
    """The version's evidence cannot be read or used; the message says what and why."""


def read_npy(data: bytes) -> tuple[tuple[int, ...], list[float]]:
    """A NumPy .npy file (version 1-3, little-endian float32/float64/int64/int32, C order) as
    (shape, flat values), without NumPy."""
    if not data.startswith(b"\x93NUMPY"):
        raise EvidenceError("not a .npy file")
    major = data[6]
    header_length, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (struct.unpack("<I", data[8:12])[0], 12)
    header = ast.literal_eval(data[start : start + header_length].decode("latin1"))
    if header.get("fortran_order"):
        raise EvidenceError(".npy in Fortran order is not supported")
    codes = {"<f4": "f", "<f8": "d", "<i8": "q", "<i4": "i"}
    code = codes.get(header["descr"])
    if code is None:
        raise EvidenceError(f".npy dtype {header['descr']} is not supported (expected one of {', '.join(codes)})")
    shape = tuple(header["shape"])
    count = math.prod(shape)
    body = data[start + header_length :]
    return shape, list(struct.unpack(f"<{count}{code}", body[: count * struct.calcsize(code)]))


@dataclass(frozen=True)
class Evidence:
    """What a registered version promises: rows (in the front door's column order), the answer
    expected for each, and the registered value of the metric the test scores."""

    rows: list[list[float]]
    expected: list[Any]  # labels (classification) or values (regression)
    problem_type: str
    metric: str | None  # None: nothing the front door answers can be scored (clustering)
    comparison: str
    registered: float | None

    @classmethod
    def from_files(cls, *, evaluation: Mapping[str, Any], feature_spec: Mapping[str, Any], features_npy: bytes, target_npy: bytes) -> Evidence:
        summary = evaluation.get("sagelab_summary") or {}
        problem_type = str(summary.get("problem_type") or feature_spec.get("problem_type") or "")
        if problem_type not in contract.PROBLEM_FAMILIES:
            # Scoring, or passing unscored, a model of unknown type would promise nothing true.
            raise EvidenceError(
                f"evaluation.json's sagelab_summary.problem_type is {problem_type[:40]!r}; expected one of {', '.join(contract.PROBLEM_FAMILIES)}"
            )
        if list(feature_spec.get("encoded_columns") or []) != list(feature_spec.get("feature_columns") or []):
            # The split holds encoded columns (one-hot, imputed); the front door takes raw ones.
            raise EvidenceError("the test split's columns are encoded (categorical features); the acceptance test sends numeric features only")
        shape, values = read_npy(features_npy)
        if len(shape) != 2:
            raise EvidenceError(f"test features have shape {shape}, expected (rows, columns)")
        rows = [values[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
        _, target = read_npy(target_npy)
        labels = list(feature_spec.get("labels") or [])
        expected: list[Any] = [labels[int(t)] for t in target] if problem_type in CLASSIFICATION else list(target)
        metric, comparison = SCORED_METRIC.get(problem_type, (None, ""))
        registered = (summary.get("metrics") or {}).get(metric) if metric else None
        if metric and not isinstance(registered, int | float):
            raise EvidenceError(f"evaluation.json has no registered {metric} for this {problem_type} model")
        return cls(rows, expected, problem_type, metric, comparison, float(registered) if registered is not None else None)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class AcceptanceResult:
    url: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "passed": self.passed, "checks": [asdict(check) for check in self.checks]}

    def summary(self) -> str:
        return "; ".join(f"{c.name} {'ok' if c.passed else 'FAILED'}: {c.detail}" for c in self.checks)


Send = Callable[[str, str, bytes | None], tuple[int, bytes]]


def http_sender(base_url: str, headers: Mapping[str, str], timeout: float = 30.0) -> Send:
    """(method, path, body) -> (status, body) over HTTP(S), 4xx/5xx returned rather than raised."""

    if not base_url.startswith(("https://", "http://127.0.0.1:")):
        raise ValueError(f"{base_url!r}: the acceptance test calls a stage's https API or the local gateway only")

    def send(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            base_url.rstrip("/") + path, data=body, method=method, headers={"Content-Type": "application/json", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the stage's own https/loopback URL)
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    return send


def score(evidence: Evidence, predictions: Sequence[Mapping[str, Any]]) -> float:
    if evidence.metric == "accuracy":
        return sum(str(p.get("label")) == str(e) for p, e in zip(predictions, evidence.expected, strict=True)) / len(evidence.expected)
    if evidence.metric == "rmse":
        errors = [(float(p["value"]) - float(e)) ** 2 for p, e in zip(predictions, evidence.expected, strict=True)]
        return math.sqrt(sum(errors) / len(errors))
    raise EvidenceError(f"cannot score {evidence.metric}")


def run_acceptance(url: str, send: Send, evidence: Evidence, *, tolerance: float, latency_p95_ms: int) -> AcceptanceResult:
    checks = []
    status, _ = send("GET", "/health", None)
    checks.append(Check("health", status == 200, f"GET /health answered {status}"))

    if evidence.metric is None or evidence.registered is None:
        checks.append(Check("score", True, f"not scored: a {evidence.problem_type or 'model'} has no labelled answers to compare"))
    else:
        predictions: list[Mapping[str, Any]] = []
        failure = None
        for start in range(0, len(evidence.rows), BATCH_ROWS):
            status, body = send("POST", "/predict", json.dumps({"instances": evidence.rows[start : start + BATCH_ROWS]}).encode())
            if status != 200:
                failure = f"POST /predict answered {status}: {body[:200]!r}"
                break
            predictions.extend(json.loads(body)["predictions"])
        if failure is not None:
            checks.append(Check("score", False, failure))
        else:
            served = score(evidence, predictions)
            bound = evidence.registered - tolerance if evidence.comparison == ">=" else evidence.registered + tolerance
            ok = served >= bound if evidence.comparison == ">=" else served <= bound
            checks.append(
                Check(
                    "score",
                    ok,
                    f"{evidence.metric} {served:.4f} on {len(evidence.rows)} test rows; registered {evidence.registered:.4f}, "
                    f"must be {evidence.comparison} {bound:.4f} (tolerance {tolerance})",
                )
            )

    timings = []
    for row in (evidence.rows * LATENCY_SAMPLES)[:LATENCY_SAMPLES]:
        started = time.perf_counter()
        status, _ = send("POST", "/predict", json.dumps({"instances": [row]}).encode())
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[max(0, math.ceil(0.95 * len(timings)) - 1)] if timings else math.inf
    checks.append(Check("latency", p95 <= latency_p95_ms, f"p95 {p95:.1f} ms over {len(timings)} single-row requests (bound {latency_p95_ms} ms)"))

    status, body = send("POST", "/predict", BAD_REQUEST)
    try:
        json_body = isinstance(json.loads(body), dict)
    except ValueError:
        json_body = False
    checks.append(
        Check("bad input", 400 <= status < 500 and json_body, f"a malformed request answered {status}{' with JSON' if json_body else ' without a JSON body'}")
    )
    return AcceptanceResult(url, tuple(checks))


@dataclass(frozen=True)
class EvidenceLocations:
    """Where a version's evidence is, from its registered metrics URI: evaluate.py writes
    `s3://<bucket>/models/evaluations/<execution>/evaluation/evaluation.json`, preprocess the test
    split and spec under `s3://<bucket>/pipeline-runs/<execution>/preprocess/` (scratch: it expires
    after scratch_expiry_days, after which a version can no longer be tested)."""

    evaluation: str
    features: str
    target: str
    feature_spec: str

    @classmethod
    def of(cls, metrics_url: str) -> EvidenceLocations:
        bucket, _, key = metrics_url.removeprefix("s3://").partition("/")
        parts = key.split("/")
        if not metrics_url.startswith("s3://") or len(parts) < 4 or parts[:2] != contract.EVALUATIONS_PREFIX.split("/"):
            raise EvidenceError(f"metrics URI {metrics_url!r} is not s3://<bucket>/{contract.EVALUATIONS_PREFIX}/<execution>/...")
        run = f"s3://{bucket}/{contract.PIPELINE_RUNS_PREFIX}/{parts[2]}/preprocess"
        return cls(metrics_url, f"{run}/test/features.npy", f"{run}/test/target.npy", f"{run}/spec/feature_spec.json")
