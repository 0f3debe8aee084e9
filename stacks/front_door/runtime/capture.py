"""Data capture at the front door: a sample of requests and answers, for every endpoint type (real-time or serverless).

SageMaker's own data capture needs a real-time endpoint; serverless endpoints (the classroom
default) cannot capture at all. The front door sees every request whatever serves it, so it samples
here: `DATA_CAPTURE_PERCENT` of the /predict calls that passed the request schema (answered or
refused by the model: a wrong type the model refuses is exactly what monitoring must see), one
object per request under `DATA_CAPTURE_PREFIX` in the artifacts bucket, SSE-KMS with the
environment's key, expiring with the prefix's lifecycle rule (`serving.data_capture_expiry_days`).

A record has SageMaker's data capture shape (captureData.endpointInput/endpointOutput with
`data` and `encoding`, eventMetadata with the inference id), so readers of SageMaker's capture
files can read these too, and the drift check (stacks/drift_check/runtime) reads both.

This module is shipped beside the front door's handler (its Lambda package) and inside the drift
check's package; nothing here imports more than the standard library.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

try:  # the function's code has the contract module at its root (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the repository: tests, the local twins
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]

# The one prefix of captured requests in the artifacts bucket: the bucket's expiry rule, the endpoint's
# own capture, the roles (who may write, who may read, and the students' non-reach) all use this.
DATA_CAPTURE_PREFIX = contract.DATA_CAPTURE_PREFIX
# Below it: what the front door samples, the drift check's reports, and ground-truth labels uploaded
# for captured requests (by inference id), which are as personal as the requests and expire with them.
FRONT_DOOR_CAPTURE = f"{DATA_CAPTURE_PREFIX}front-door/"
REPORTS = f"{DATA_CAPTURE_PREFIX}reports/"
GROUND_TRUTH = f"{DATA_CAPTURE_PREFIX}ground-truth/"
INFERENCE_ID_HEADER = "X-Inference-Id"
# A row of a multi-row request is `<inference id>:<row position>` when labels are uploaded.
ROW_SEPARATOR = ":"


def sampled(percent: float, draw: float | None = None) -> bool:
    """Whether this request is captured (`percent` of 0..100; 0 never, 100 always)."""
    if percent <= 0:
        return False
    return (random.random() if draw is None else draw) * 100 < percent  # noqa: S311 (sampling, not security)


def capture_key(inference_id: str, when: datetime) -> str:
    """Hour folders, as SageMaker's capture uses: the drift check lists one window by prefix."""
    return f"{FRONT_DOOR_CAPTURE}{when:%Y/%m/%d/%H}/{when:%M%S}-{inference_id}.json"


def hour_prefixes(start: datetime, end: datetime, base: str = FRONT_DOOR_CAPTURE) -> list[str]:
    """The hour folders a window [start, end) touches."""
    prefixes = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        prefixes.append(f"{base}{hour:%Y/%m/%d/%H}/")
        hour = hour.fromtimestamp(hour.timestamp() + 3600, tz=hour.tzinfo)
    return prefixes


def capture_record(inference_id: str, request: str, status: int, answer: str, when: datetime | None = None) -> dict[str, Any]:
    when = when or datetime.now(UTC)
    return {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "data": request, "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": answer, "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": inference_id, "inferenceId": inference_id, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0",
        "sagelab": {"status": status},
    }


@dataclass(frozen=True)
class CapturedRow:
    """One row of a captured request: positional values or a record by column name, and the
    model's answer for it (None when the model refused the request)."""

    inference_id: str
    values: list[Any] | dict[str, Any]
    prediction: dict[str, Any] | None


def rows_of(records: Iterable[dict[str, Any]]) -> Iterator[CapturedRow]:
    """The rows of capture records (ours or SageMaker's JSON ones). A record that cannot be read is
    skipped: capture is a sample, and one odd request must not stop the check."""
    for record in records:
        data = record.get("captureData", {})
        inference_id = str(record.get("eventMetadata", {}).get("inferenceId") or record.get("eventMetadata", {}).get("eventId") or "")
        try:
            request = json.loads(data["endpointInput"]["data"])
            instances = request["instances"]
        except (KeyError, TypeError, ValueError):
            continue
        predictions: list[Any] = []
        if record.get("sagelab", {}).get("status", 200) == 200:
            try:
                predictions = json.loads(data["endpointOutput"]["data"]).get("predictions") or []
            except (KeyError, TypeError, ValueError, AttributeError):
                predictions = []
        if not isinstance(instances, list):
            continue
        for position, values in enumerate(instances):
            if not isinstance(values, list | dict):
                continue
            prediction = predictions[position] if position < len(predictions) and isinstance(predictions[position], dict) else None
            yield CapturedRow(f"{inference_id}{ROW_SEPARATOR}{position}", values, prediction)
