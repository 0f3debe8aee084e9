"""The local stand-in for a deployed environment: the same definition, local values for its
placeholders, and the code and default dataset staged where CDK would publish them."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagelab.code_bundle import stage_code_bundle
from sagelab.config import EnvironmentConfig
from sagelab.datasets import DIGITS_CSV
from sagelab.local.runner import LocalS3
from sagelab.pipeline_definition import PIPELINE_CODE_PREFIX, definition_json, substitute

DEFAULT_WORKDIR = Path(".sagelab")
DATASET_PREFIX = "datasets/digits/"


@dataclass(frozen=True)
class LocalEnvironment:
    workdir: Path
    values: dict[str, str]
    definition: dict[str, Any]
    pipeline_name: str

    @property
    def model_package_group(self) -> str:
        return self.values["ModelPackageGroupName"]

    @property
    def data_bucket(self) -> str:
        return self.values["DataBucket"]


def local_values(env: EnvironmentConfig, code_version: str) -> dict[str, str]:
    names = env.names
    return {
        "ArtifactsBucket": names.name("artifacts"),
        "DataBucket": names.name("data"),
        "CodeVersion": code_version,
        "PipelineRoleName": names.name("pipeline-role"),
        "KmsKeyArn": "arn:aws:kms:local:000000000000:key/local",
        "ModelPackageGroupName": env.names.model_package_group,
        "JobNamePrefix": names.scope,
        "SklearnImageUri": "local/sagemaker-scikit-learn:1.4-2",
        "XgboostImageUri": "local/sagemaker-xgboost:3.0-5",
        "KmeansImageUri": "local/sagemaker-kmeans:1",
        "AWS::Partition": "aws",
        "AWS::AccountId": "000000000000",
        "AWS::Region": env.region,
    }


def prepare(env: EnvironmentConfig, workdir: Path = DEFAULT_WORKDIR) -> LocalEnvironment:
    """Stage code + default dataset into `<workdir>/s3` and substitute the definition."""
    workdir = Path(workdir).resolve()
    s3 = LocalS3(workdir / "s3")
    text = definition_json(env.pipeline)
    code_dir = workdir / "staging" / PIPELINE_CODE_PREFIX
    if code_dir.exists():
        shutil.rmtree(code_dir)
    bundle = stage_code_bundle(code_dir, custom_scripts=[env.pipeline.custom_script] if env.pipeline.custom_script else [])
    values = local_values(env, bundle.version)
    s3.upload(bundle.directory, f"s3://{values['ArtifactsBucket']}/{PIPELINE_CODE_PREFIX}/{bundle.version}")
    dataset_target = s3.path(f"s3://{values['DataBucket']}/{DATASET_PREFIX}{DIGITS_CSV.name}")
    if not dataset_target.exists():
        dataset_target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DIGITS_CSV, dataset_target)
    definition = json.loads(substitute(text, values))
    return LocalEnvironment(workdir=workdir, values=values, definition=definition, pipeline_name=env.names.pipeline)


def upload_data(local_env: LocalEnvironment, source: Path) -> str:
    """`--data PATH`: copy a file or folder into local S3; returns the URI for InputDataUri."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"--data {source}: no such file or folder")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"--data {source}: the folder has no files")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:  # a chunk at a time: the runner's process never holds the dataset (same digest)
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    uri = f"s3://{local_env.data_bucket}/uploads/{source.stem}-{digest.hexdigest()[:10]}/"
    s3 = LocalS3(local_env.workdir / "s3")
    target = s3.path(uri)
    if source.is_file():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / source.name)
    else:
        s3.upload(source, uri)
    return uri
