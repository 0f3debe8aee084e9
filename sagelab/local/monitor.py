"""Monitoring without AWS: the local S3's side of the front door's data capture, and `sagelab monitor`.

`sagelab serve` runs the deployed front door handler; with `serving.data_capture_percent` of its
`--config` it samples requests exactly as on AWS (stacks/front_door/runtime/capture.py), through boto3's
S3 PutObject to the local endpoint, which stores them under the local artifacts bucket:
    <workdir>/s3/<artifacts bucket>/data-capture/front-door/YYYY/MM/DD/HH/<mmss>-<inference id>.json

`sagelab monitor` runs the drift check's comparison (stacks/drift_check/runtime/comparison.py, the module the
scheduled Lambda runs) over those records against the served version's baseline (beside its
evaluation, found through the version's model description), and writes the report and its picture
under data-capture/reports/ as the Lambda does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pipeline_steps import contract
from sagelab.local.s3_paths import S3PathError, bucket_problem, object_path
from stacks.drift_check.runtime import comparison
from stacks.drift_check.runtime.plot import drift_png
from stacks.front_door.runtime import capture

CAPTURE_ENVIRONMENT = ("DATA_CAPTURE_PERCENT", "ARTIFACTS_BUCKET")
_BUCKET = re.compile(r"^s3://([^/]+)/")
MOST_DRIFTED = 6  # features in the picture


class MonitorError(RuntimeError):
    """The check cannot run; the message says why and what to do."""


def capture_environment(model: Mapping[str, str], percent: int) -> dict[str, str]:
    """The front door's capture settings: the share to sample, and the artifacts bucket (locally the
    bucket the served version's description is in, as on AWS)."""
    match = _BUCKET.match(model.get(contract.ENV_DESCRIPTION_URI, ""))
    return {"DATA_CAPTURE_PERCENT": str(percent), "ARTIFACTS_BUCKET": match.group(1) if match else ""}


def write_capture(request: BaseHTTPRequestHandler, s3_root: Path | None, body: bytes) -> None:
    """S3 PutObject, path style, of a capture record (its signature already verified over `body`):
    only below the front door's capture prefix (all the deployed front door may write), and only
    where the local S3 would put that bucket and key (sagelab/local/s3_paths.py)."""
    bucket, _, key = unquote(request.path.split("?", 1)[0].lstrip("/")).partition("/")
    path = None
    if s3_root is not None and key.startswith(capture.FRONT_DOOR_CAPTURE) and bucket_problem(bucket) is None:
        try:
            path = object_path(s3_root, bucket, key)
        except S3PathError:
            path = None
    if request.headers.get("Content-Encoding", "").startswith("aws-chunked"):
        body = _unchunk(body)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    answer = b"" if path is not None else b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    request.send_response(200 if path is not None else 403)
    request.send_header("Content-Length", str(len(answer)))
    request.send_header("ETag", '"0"')
    request.end_headers()
    request.wfile.write(answer)


def _unchunk(body: bytes) -> bytes:
    """aws-chunked framing (`<hex size>[;...]\\r\\n<data>\\r\\n`... `0\\r\\n<trailers>`) -> the data."""
    data, rest = bytearray(), body
    while rest:
        header, _, rest = rest.partition(b"\r\n")
        size = int(header.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        data += rest[:size]
        rest = rest[size + 2 :]
    return bytes(data)


# -- sagelab monitor -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    report: comparison.Report
    report_path: Path
    plot_path: Path
    baseline_dir: Path


def baseline_dir(workdir: Path, group: str | None = None, version: int | None = None) -> tuple[Path, str]:
    """The served version's evaluation folder (its baseline) and the artifacts bucket."""
    from sagelab.local.serve import ServeError, select_package

    try:
        package = select_package(workdir, group, version)
    except ServeError as error:
        raise MonitorError(str(error)) from None
    # The version's own pointer (DriftCheckBaselines), else the folder of its model description,
    # where the deployed check finds it (its MODEL_DESCRIPTION_URI).
    uri = package.drift_check_baselines.get("statistics") or package.customer_metadata.get(contract.METADATA_DESCRIPTION, "")
    match = _BUCKET.match(uri)
    if not match:
        raise MonitorError(f"{package.group} version {package.version} was registered without a model description; run `sagelab run` again to register one")
    folder = (workdir / "s3" / uri[len("s3://") :]).parent
    if not (folder / comparison.STATISTICS_FILE_NAME).is_file():
        raise MonitorError(
            f"{package.group} version {package.version} has no drift baseline ({comparison.STATISTICS_FILE_NAME} beside {folder.name}/); "
            "versions registered before monitoring existed have none: run `sagelab run` again"
        )
    return folder, match.group(1)


def load_baseline(folder: Path) -> comparison.Baseline:
    def read(name: str) -> Any:
        path = folder / name
        return json.loads(path.read_text()) if path.is_file() else None

    return comparison.Baseline(
        statistics=read(comparison.STATISTICS_FILE_NAME),
        constraints=read(comparison.CONSTRAINTS_FILE_NAME) or {},
        prediction_statistics=read(comparison.PREDICTION_STATISTICS_FILE_NAME),
        evaluation=read(comparison.EVALUATION_FILE_NAME),
    )


def capture_files(bucket_dir: Path) -> list[Path]:
    root = bucket_dir / capture.FRONT_DOOR_CAPTURE
    return sorted(root.rglob("*.json")) if root.is_dir() else []


def captured_records(bucket_dir: Path, hours: float | None = None, now: datetime | None = None, files: list[Path] | None = None) -> list[dict[str, Any]]:
    """The capture records (of `files`, default every one), of the last `hours` when given."""
    since = (now or datetime.now(UTC)) - timedelta(hours=hours) if hours else None
    records = []
    for path in capture_files(bucket_dir) if files is None else files:
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if since is not None:
            when = datetime.strptime(record.get("eventMetadata", {}).get("inferenceTime", "1970-01-01T00:00:00Z"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            if when < since:
                continue
        records.append(record)
    return records


def uploaded_labels(bucket_dir: Path, extra: Path | None = None) -> dict[str, str]:
    """Ground truth under data-capture/ground-truth/ (as uploaded on AWS), plus `--labels FILE`."""
    labels: dict[str, str] = {}
    root = bucket_dir / capture.GROUND_TRUTH
    for path in sorted(root.rglob("*.csv")) if root.is_dir() else []:
        labels.update(comparison.labels_of(path.read_text()))
    if extra is not None:
        if not extra.is_file():
            raise MonitorError(f"--labels {extra}: no such file (CSV lines inference_id,label)")
        labels.update(comparison.labels_of(extra.read_text()))
    return labels


def run_check(
    workdir: Path,
    *,
    group: str | None = None,
    version: int | None = None,
    hours: float | None = None,
    labels: Path | None = None,
    settings: comparison.DriftSettings | None = None,
    now: datetime | None = None,
    files: list[Path] | None = None,
) -> CheckResult:
    """The check over what was captured (`files`: only these capture files)."""
    folder, bucket = baseline_dir(workdir, group, version)
    bucket_dir = workdir / "s3" / bucket
    records = captured_records(bucket_dir, hours, now, files)
    if not records:
        raise MonitorError(
            f"nothing captured under {bucket_dir / capture.FRONT_DOOR_CAPTURE}: serve with `sagelab serve --config FILE` "
            "whose serving.data_capture_percent is above 0, and send requests"
        )
    report = comparison.check(load_baseline(folder), records, uploaded_labels(bucket_dir, labels), settings)
    stamp = (now or datetime.now(UTC)).strftime("%Y/%m/%d/%H%M%S")
    out = bucket_dir / capture.REPORTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    report_path, plot_path = out / comparison.REPORT_FILE_NAME, out / comparison.PLOT_FILE_NAME
    document = {**report.to_json(), "baseline": str(folder), "plot": str(plot_path)}
    report_path.write_text(json.dumps(document, indent=2))
    plot_path.write_bytes(drift_png(report.most_drifted(MOST_DRIFTED), report.drift_threshold))
    return CheckResult(report, report_path, plot_path, folder)


def render(result: CheckResult) -> str:
    """The report for a terminal: violations, then each feature's drift (most drifted first)."""
    report = result.report
    lines = [f"checked {report.rows} captured rows against the baseline in {result.baseline_dir}"]
    lines.append(f"violations: {len(report.violations)}" + ("" if report.violations else " (clean)"))
    lines += [f"  {v.feature:<24} {v.check:<26} {v.description}" for v in report.violations]
    lines.append(f"drift (PSI, threshold {report.drift_threshold}):")
    ranked = sorted(report.features.values(), key=lambda f: -(f.drift if f.drift is not None else -1.0))
    lines += [f"  {f.name:<24} {'n/a' if f.drift is None else f'{f.drift:.4f}'}" for f in ranked]
    if report.prediction is not None:
        lines.append(f"  {'(prediction)':<24} {'n/a' if report.prediction.drift is None else f'{report.prediction.drift:.4f}'}")
    if report.quality is not None:
        lines.append(f"quality: {report.quality['message']}")
    lines.append(f"report {result.report_path}")
    lines.append(f"plot   {result.plot_path}")
    return "\n".join(lines)
