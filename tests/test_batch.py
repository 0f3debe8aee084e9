"""Batch predictions: locally with the approved model, and as a SageMaker transform job (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pandas as pd
import pytest

from sagelab.datasets import DIGITS_CSV

REPO_ROOT = Path(__file__).resolve().parent.parent


def sagelab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sagelab", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_local_batch_scores_every_row_with_the_approved_model(tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    assert sagelab("run", "--workdir", str(workdir), "--json").returncode == 0
    unapproved = sagelab("batch", "--workdir", str(workdir), "--input", str(DIGITS_CSV), "--output", str(tmp_path / "p.csv"))
    assert unapproved.returncode == 2 and "no approved model" in unapproved.stderr
    assert sagelab("models", "approve", "sagelab-dev-models", "1", "--workdir", str(workdir)).returncode == 0
    folder = tmp_path / "incoming"
    folder.mkdir()
    digits = pd.read_csv(DIGITS_CSV)
    digits.drop(columns="label").head(1500).to_csv(folder / "a.csv", index=False)  # header: records; > 1000 rows: chunked
    digits.drop(columns="label").tail(10).to_csv(folder / "b.csv", index=False, header=False)  # positional rows
    completed = sagelab("batch", "--workdir", str(workdir), "--input", str(folder), "--output", str(tmp_path / "p.csv"))
    assert completed.returncode == 0, completed.stderr
    assert "scored 1510 rows with sagelab-dev-models/1" in completed.stdout
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 1510 and list(predictions.columns) == ["file", "row", "prediction", "probability"]
    first = predictions[predictions.file == "a.csv"]
    assert (first.prediction.to_numpy() == digits.label.head(1500).to_numpy()).mean() > 0.97


def test_aws_batch_starts_a_transform_job_with_the_approved_package(moto_url: str) -> None:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    outputs = {
        "PipelineName": "sagelab-batch-pipeline",
        "ModelPackageGroupName": "sagelab-batch-models",
        "ArtifactsBucketName": "artifacts-abc",
        "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k",
        "EndpointRoleArn": "arn:aws:iam::123456789012:role/endpoint",
    }
    template = {"Resources": {"T": {"Type": "AWS::SNS::Topic"}}, "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    session.client("cloudformation", endpoint_url=moto_url).create_stack(StackName="sagelab-batch-platform", TemplateBody=json.dumps(template))
    sagemaker = session.client("sagemaker", endpoint_url=moto_url)
    sagemaker.create_model_package_group(ModelPackageGroupName="sagelab-batch-models")
    spec = {
        "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    arn = sagemaker.create_model_package(ModelPackageGroupName="sagelab-batch-models", ModelApprovalStatus="Approved", InferenceSpecification=spec)[
        "ModelPackageArn"
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    local_path = sagelab("batch", "--aws", "--env", "batch", "--input", "data/", "--endpoint-url", moto_url, env=env)
    assert local_path.returncode == 2 and "a batch transform reads an s3:// prefix" in local_path.stderr
    completed = sagelab("batch", "--aws", "--env", "batch", "--input", "s3://data-abc/to-score/", "--endpoint-url", moto_url, env=env)
    assert completed.returncode == 0, completed.stderr
    job = completed.stdout.split()[3]
    described = sagemaker.describe_transform_job(TransformJobName=job)
    assert described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://data-abc/to-score/"
    assert described["TransformOutput"]["S3OutputPath"] == f"s3://artifacts-abc/batch-predictions/{job}/"
    assert sagemaker.describe_model(ModelName=job)["Containers"][0]["ModelPackageName"] == arn
