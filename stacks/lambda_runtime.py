"""What SageLab's Python Lambda functions share: the runtime, AWS's Powertools layer for it, the
staging of a package whose files come from several units, and the contract module
(pipeline_steps/contract.py) at the root of every function's code.

The layer is AWS-managed (published by AWS in every region), so nothing is bundled with Docker.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
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


def contract_file() -> Path:
    return package_dir("pipeline_steps") / CONTRACT_MODULE


def staged_package(purpose: str, files: Mapping[str, Path | bytes]) -> Path:
    """A Lambda package whose files live in several units' runtime/ folders (e.g. the drift check's
    modules and the front door's capture format): each source file copied to its path inside the
    package (or, given as bytes, written: a class's settings), in a folder named by the content
    (the same files give the same folder and asset hash)."""

    def content(source: Path | bytes) -> bytes:
        return source if isinstance(source, bytes) else source.read_bytes()

    digest = hashlib.sha256()
    for name, source in sorted(files.items()):
        digest.update(name.encode() + b"\0" + content(source) + b"\0")
    folder = Path(tempfile.gettempdir()) / f"sagelab-{purpose}-{digest.hexdigest()[:16]}"
    if not folder.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f"sagelab-{purpose}-"))
        for name, source in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(content(source))
        try:
            staging.rename(folder)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def runtime_files(source: Path) -> dict[str, Path]:
    """A runtime folder's files by their path inside it, without bytecode and without the package
    markers (`__init__.py`) the repository needs: in the function the folder is the code's root."""
    source = Path(source)
    return {
        path.relative_to(source).as_posix(): path
        for path in sorted(source.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" and path.name != "__init__.py"
    }


def code_with_contract(source: Path) -> lambda_.Code:
    """The function's code: `source` (a runtime folder) with contract.py at its root. A Lambda ships
    only its own folder and cannot import `pipeline_steps`, so the contract travels as the same
    file, not a copy in its code (docs/decisions/0018)."""
    files = {**runtime_files(source), CONTRACT_MODULE: contract_file()}
    return lambda_.Code.from_asset(str(staged_package(f"lambda-{Path(source).name}", files)))
