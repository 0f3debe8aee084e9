"""Batch predictions: locally with the approved model, and as a SageMaker transform job (moto)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from sagelab.aws_session import new_session
from sagelab.datasets import DIGITS_CSV
from tests.conftest import Cli


@pytest.mark.slow  # the session's trained digits run: batch scoring end to end on a real model
def test_local_batch_scores_every_row_with_the_approved_model(trained_workdir: Path, tmp_path: Path, cli: Cli) -> None:
    workdir = trained_workdir
    unapproved = cli("batch", "--workdir", workdir, "--input", DIGITS_CSV, "--output", tmp_path / "p.csv")
    assert unapproved.returncode == 2 and "no approved model" in unapproved.stderr
    assert cli("models", "approve", "sagelab-dev--models", "1", "--workdir", workdir).returncode == 0
    folder = tmp_path / "incoming"
    folder.mkdir()
    digits = pd.read_csv(DIGITS_CSV)
    digits.drop(columns="label").head(1500).to_csv(folder / "a.csv", index=False)  # header: records; > 1000 rows: chunked
    digits.drop(columns="label").tail(10).to_csv(folder / "b.csv", index=False, header=False)  # positional rows
    completed = cli("batch", "--workdir", workdir, "--input", folder, "--output", tmp_path / "p.csv")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"scored 1510 rows with sagelab-dev--models/1 -> {tmp_path / 'p.csv'}\n"
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 1510 and list(predictions.columns) == ["file", "row", "prediction", "probability"]
    first = predictions[predictions.file == "a.csv"]
    assert (first.prediction.to_numpy() == digits.label.head(1500).to_numpy()).mean() > 0.97


def test_aws_batch_starts_a_transform_job_with_the_approved_package(moto_url: str, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    session = new_session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    outputs = {
        "PipelineName": "sagelab-batch--pipeline",
        "ModelPackageGroupName": "sagelab-batch--models",
        "ArtifactsBucketName": "artifacts-abc",
        "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k",
        "EndpointRoleArn": "arn:aws:iam::123456789012:role/endpoint",
    }
    template = {"Resources": {"T": {"Type": "AWS::SNS::Topic"}}, "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    session.client("cloudformation", endpoint_url=moto_url).create_stack(StackName="sagelab-batch--platform", TemplateBody=json.dumps(template))
    sagemaker = session.client("sagemaker", endpoint_url=moto_url)
    sagemaker.create_model_package_group(ModelPackageGroupName="sagelab-batch--models")
    spec = {
        "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    arn = sagemaker.create_model_package(ModelPackageGroupName="sagelab-batch--models", ModelApprovalStatus="Approved", InferenceSpecification=spec)[
        "ModelPackageArn"
    ]
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    local_path = cli("batch", "--aws", "--env", "batch", "--input", "data/", "--endpoint-url", moto_url)
    assert (local_path.returncode, local_path.stderr) == (2, "sagelab: error: --input 'data/': a batch transform reads an s3:// prefix\n")
    completed = cli("batch", "--aws", "--env", "batch", "--input", "s3://data-abc/to-score/", "--endpoint-url", moto_url)
    assert completed.returncode == 0, completed.stderr
    job = completed.stdout.split()[3]
    described = sagemaker.describe_transform_job(TransformJobName=job)
    assert described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://data-abc/to-score/"
    assert described["TransformOutput"]["S3OutputPath"] == f"s3://artifacts-abc/batch-predictions/{job}/"
    assert sagemaker.describe_model(ModelName=job)["Containers"][0]["ModelPackageName"] == arn
