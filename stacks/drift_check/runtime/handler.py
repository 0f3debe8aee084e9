"""The scheduled drift check (EventBridge -> this Lambda), decision 0013.

Reads the front door's capture of the last `WINDOW_HOURS` (stacks/front_door/runtime/capture.py), the
served version's baseline beside its evaluation (the folder of `MODEL_DESCRIPTION_URI`, which the
approval deployer sets with the version) and ground truth uploaded under the capture prefix; runs
the one comparison (comparison.py, also run by `sagelab monitor`); writes report.json and drift.png
under data-capture/reports/<hour>/ and publishes CloudWatch metrics in `METRIC_NAMESPACE`:
    Violations, MaxDrift, PredictionDrift, CapturedRows, LiveAccuracy | LiveRmse   (Endpoint)
    FeatureDrift                                                                    (Endpoint, Feature)
FeatureDrift goes out for the features with a violation and the `FEATURE_METRICS` most drifted
only: a custom metric is billed for every hour it receives data, and a model may have hundreds of
features.

The package is runtime/ with only monitor/ and front_door/capture.py in it (stacks' asset filter).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

try:  # the Lambda package: runtime/ is its root, the contract module beside (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
    from front_door import capture
    from monitor import comparison
    from monitor.plot import drift_png
except ModuleNotFoundError:  # the repository
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]
    from stacks.drift_check.runtime import comparison
    from stacks.drift_check.runtime.plot import drift_png
    from stacks.front_door.runtime import capture

FEATURE_METRICS = 10
MOST_DRIFTED = 6
MAX_RECORDS = 20_000  # bounds one run's time and memory (an hour of capture at 10 % is far less)
MAX_LABEL_FILES = 100
READERS = 16
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    if service not in _clients:
        import boto3

        _clients[service] = boto3.client(service)
    return _clients[service]


def _log(message: str, **fields: Any) -> None:
    print(json.dumps({"message": message, **fields}, default=str), flush=True)


def read_json(bucket: str, key: str, required: bool = True) -> Any:
    from botocore.exceptions import ClientError

    try:
        return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        # Without s3:ListBucket on the baseline's folder a missing key is AccessDenied, not NoSuchKey.
        if required or error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "AccessDenied", "404", "403"):
            raise comparison.BaselineError(f"s3://{bucket}/{key} cannot be read: {error}") from None
        return None
    except ValueError:
        if required:
            raise comparison.BaselineError(f"s3://{bucket}/{key} is not JSON") from None
        return None


def keys_under(bucket: str, prefix: str, limit: int) -> list[str]:
    keys: list[str] = []
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
        if len(keys) >= limit:
            return keys[:limit]
    return keys


def load_baseline(bucket: str, description_uri: str) -> comparison.Baseline:
    if not description_uri.startswith(f"s3://{bucket}/"):
        raise comparison.BaselineError("the model description is not in this environment's artifacts bucket")
    folder = description_uri[len(f"s3://{bucket}/") :].rpartition("/")[0]
    return comparison.Baseline(
        statistics=read_json(bucket, f"{folder}/{comparison.STATISTICS_FILE_NAME}"),
        constraints=read_json(bucket, f"{folder}/{comparison.CONSTRAINTS_FILE_NAME}", required=False) or {},
        prediction_statistics=read_json(bucket, f"{folder}/{comparison.PREDICTION_STATISTICS_FILE_NAME}", required=False),
        evaluation=read_json(bucket, f"{folder}/{comparison.EVALUATION_FILE_NAME}", required=False),
    )


def metrics_of(report: comparison.Report, endpoint: str) -> list[dict[str, Any]]:
    dimensions = [{"Name": "Endpoint", "Value": endpoint}]
    data: list[dict[str, Any]] = [
        {"MetricName": "Violations", "Dimensions": dimensions, "Value": float(len(report.violations)), "Unit": "Count"},
        {"MetricName": "CapturedRows", "Dimensions": dimensions, "Value": float(report.rows), "Unit": "Count"},
    ]
    if report.overall_drift is not None:
        data.append({"MetricName": "MaxDrift", "Dimensions": dimensions, "Value": report.overall_drift, "Unit": "None"})
    if report.prediction is not None and report.prediction.drift is not None:
        data.append({"MetricName": "PredictionDrift", "Dimensions": dimensions, "Value": report.prediction.drift, "Unit": "None"})
    quality = report.quality or {}
    if quality.get("live") is not None:
        name = "LiveRmse" if quality["metric"] == "rmse" else "LiveAccuracy"
        data.append({"MetricName": name, "Dimensions": dimensions, "Value": float(quality["live"]), "Unit": "None"})
    violated = {v.feature for v in report.violations}
    chosen = {f.name: f for f in report.most_drifted(FEATURE_METRICS)}
    chosen.update({name: result for name, result in report.features.items() if name in violated and result.drift is not None})
    for name, result in chosen.items():
        data.append(
            {"MetricName": "FeatureDrift", "Dimensions": [*dimensions, {"Name": "Feature", "Value": name[:255]}], "Value": result.drift, "Unit": "None"}
        )
    return data


def run(now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    bucket, endpoint = os.environ["ARTIFACTS_BUCKET"], os.environ["ENDPOINT_NAME"]
    description_uri = os.environ.get(contract.ENV_DESCRIPTION_URI, "").strip()
    if not description_uri:
        _log("no model deployed: nothing to compare")
        return {"status": "no-model"}
    settings = comparison.DriftSettings(threshold=float(os.environ.get("DRIFT_THRESHOLD", "0.2")))
    hours = int(os.environ.get("WINDOW_HOURS", "1"))
    baseline = load_baseline(bucket, description_uri)
    keys: list[str] = []
    for prefix in capture.hour_prefixes(now - timedelta(hours=hours), now):
        keys += keys_under(bucket, prefix, MAX_RECORDS - len(keys))
    # One object per captured request: read them concurrently (S3 latency, not CPU, bounds a run).
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        records = list(pool.map(lambda key: read_json(bucket, key, required=False), keys))
    labels: dict[str, str] = {}
    for key in keys_under(bucket, capture.GROUND_TRUTH, MAX_LABEL_FILES):
        labels.update(comparison.labels_of(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")))
    report = comparison.check(baseline, [r for r in records if isinstance(r, dict)], labels, settings)
    folder = f"{capture.REPORTS}{now:%Y/%m/%d/%H%M%S}"
    document = {**report.to_json(), "window_hours": hours, "baseline": description_uri.rpartition("/")[0], "captured_objects": len(keys)}
    s3 = client("s3")
    s3.put_object(Bucket=bucket, Key=f"{folder}/{comparison.REPORT_FILE_NAME}", Body=json.dumps(document).encode(), ContentType="application/json")
    s3.put_object(
        Bucket=bucket,
        Key=f"{folder}/{comparison.PLOT_FILE_NAME}",
        Body=drift_png(report.most_drifted(MOST_DRIFTED), settings.threshold),
        ContentType="image/png",
    )
    data = metrics_of(report, endpoint)
    namespace = os.environ["METRIC_NAMESPACE"]
    for start in range(0, len(data), 1000):  # PutMetricData takes up to 1,000 metrics per call
        client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])
    _log("drift check", rows=report.rows, violations=len(report.violations), report=f"s3://{bucket}/{folder}/{comparison.REPORT_FILE_NAME}")
    return {"status": "checked", "rows": report.rows, "violations": len(report.violations), "report": f"{folder}/{comparison.REPORT_FILE_NAME}"}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run()
