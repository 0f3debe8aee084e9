"""Batch predictions: score a whole file or folder (locally) or an S3 prefix (a SageMaker batch
transform job) with the approved model."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

from sagelab.aws_ops import AwsOperations, OperationError, translate
from sagelab.naming import ResourceNames

CHUNK_ROWS = 1000  # the front door's request limit; the same chunks the endpoint would accept


def _input_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*.csv") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no CSV files under {source}")
    return files


def score_local(workdir: Path, source: Path, output: Path, group: str | None = None, version: int | None = None) -> dict[str, Any]:
    """Score CSV rows (a header row means records by column name) with the approved local model;
    write one output row per input row: the input file, row number, label (or value)."""
    from sagelab.local.containers import ErrorAnswer
    from sagelab.local.serve import ServeError, load_served_model

    served = load_served_model(workdir, group, version)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows_scored = 0
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "row", "prediction", "probability"])
        for path in _input_files(source):
            with path.open(newline="") as stream:
                records = list(csv.reader(stream))
            header: list[str] | None = None
            if records and any(_not_number(cell) for cell in records[0]):
                header, records = records[0], records[1:]
            if served.model.spec.target_column in (header or []):
                target = header.index(served.model.spec.target_column)  # type: ignore[union-attr]
                header = [h for i, h in enumerate(header or []) if i != target]
                records = [[c for i, c in enumerate(r) if i != target] for r in records]
            for start in range(0, len(records), CHUNK_ROWS):
                chunk = records[start : start + CHUNK_ROWS]
                instances = [dict(zip(header, map(csv_cell, row), strict=False)) for row in chunk] if header else [[csv_cell(c) for c in row] for row in chunk]
                try:
                    body, _ = served.invoke(json.dumps({"instances": instances}).encode(), "application/json", "application/json")
                except ErrorAnswer as error:  # the model refused these rows; its message names the row in the chunk
                    raise ServeError(f"{path.name} rows {start + 1}..{start + len(chunk)}: {error}") from None
                for offset, prediction in enumerate(json.loads(body)["predictions"]):
                    label = prediction.get("label", prediction.get("value"))
                    probability = prediction.get("probabilities", {}).get(label) if "label" in prediction else ""
                    writer.writerow([path.name, start + offset + 1, label, probability])
                rows_scored += len(chunk)
    return {"model": f"{served.package.group}/{served.package.version}", "rows": rows_scored, "output": str(output)}


def _not_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell.strip() != ""
    return False


def csv_cell(cell: str) -> Any:
    """A CSV cell as the API takes it: empty -> null, numbers -> float, anything else text."""
    if cell.strip() == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def start_transform(ops: AwsOperations, env_name: str, input_uri: str, instance_type: str = "ml.m5.large") -> dict[str, str]:
    """A SageMaker batch transform of an S3 prefix (headerless CSV rows) with the latest approved
    model package; outputs go to the artifacts bucket under batch-predictions/."""
    if not input_uri.startswith("s3://"):
        raise OperationError(f"--input {input_uri!r}: a batch transform reads an s3:// prefix")
    environment = ops.environment(env_name)
    outputs = ops.platform_outputs(env_name)
    approved = [m for m in ops.models(environment.model_package_group) if m["status"] == "Approved"]
    if not approved:
        raise OperationError(f"no approved model in {environment.model_package_group}: approve one with `sagelab models approve GROUP VERSION --aws`")
    package = approved[-1]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    name = ResourceNames.of(env_name).batch_job(stamp)
    translate(ops.sagemaker.create_model, ModelName=name, ExecutionRoleArn=outputs["EndpointRoleArn"], Containers=[{"ModelPackageName": package["arn"]}])
    destination = f"s3://{outputs['ArtifactsBucketName']}/batch-predictions/{name}/"
    translate(
        ops.sagemaker.create_transform_job,
        TransformJobName=name,
        ModelName=name,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}}, "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": destination, "Accept": "application/json", "AssembleWith": "Line", "KmsKeyId": outputs["KmsKeyArn"]},
        TransformResources={"InstanceType": instance_type, "InstanceCount": 1, "VolumeKmsKeyId": outputs["KmsKeyArn"]},
        MaxPayloadInMB=6,
        BatchStrategy="MultiRecord",
    )
    return {"job": name, "model_package": str(package["arn"]), "output": destination}
