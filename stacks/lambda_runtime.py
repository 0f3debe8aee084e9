"""What SageLab's Python Lambda functions share: the runtime, AWS's Powertools layer for it, and
the contract module (pipeline_steps/contract.py) at the root of every function's code.

The layer is AWS-managed (published by AWS in every region), so nothing is bundled with Docker.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from sagelab.package_files import package_dir
from sagelab.pipeline_definition import CONTRACT_MODULE

POWERTOOLS_ACCOUNT = "017000801446"  # AWS's account that publishes the Powertools layers
POWERTOOLS_LAYER_VERSION = 27
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12


def powertools_layer(scope: Construct, construct_id: str = "Powertools") -> lambda_.ILayerVersion:
    """The Powertools for AWS Lambda (Python) v3 layer for LAMBDA_RUNTIME in the stack's region."""
    stack = Stack.of(scope)
    runtime = LAMBDA_RUNTIME.name.replace(".", "")
    arn = f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-{runtime}-x86_64:{POWERTOOLS_LAYER_VERSION}"
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)


STAGING_IGNORED = ("__pycache__", "*.pyc")


def contract_file() -> Path:
    return package_dir("pipeline_steps") / CONTRACT_MODULE


def with_contract(source: Path) -> Path:
    """`source` (a runtime folder) with contract.py beside its top level, staged in a folder named
    by its content: a Lambda ships only its own folder and cannot import `pipeline_steps`, so the
    contract travels as the same file, not a copy in its code (docs/decisions/0018)."""
    source = Path(source)
    ignore = shutil.ignore_patterns(*STAGING_IGNORED)
    files = sorted(path for path in source.rglob("*") if path.is_file() and not any(part == "__pycache__" for part in path.parts) and path.suffix != ".pyc")
    digest = hashlib.sha256()
    for path in [*files, contract_file()]:
        name = path.relative_to(source).as_posix() if path.is_relative_to(source) else CONTRACT_MODULE
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    folder = Path(tempfile.gettempdir()) / f"sagelab-lambda-{source.name}-{digest.hexdigest()[:16]}"
    if not (folder / CONTRACT_MODULE).is_file():
        staging = Path(tempfile.mkdtemp(prefix=f"sagelab-lambda-{source.name}-"))
        shutil.copytree(source, staging, ignore=ignore, dirs_exist_ok=True)
        shutil.copyfile(contract_file(), staging / CONTRACT_MODULE)
        try:
            staging.rename(folder)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def code_with_contract(source: Path, exclude: Sequence[str] = ()) -> lambda_.Code:
    """The function's code: `source` with the contract module at its root; `exclude` as CDK's."""
    return lambda_.Code.from_asset(str(with_contract(source)), exclude=list(exclude))
