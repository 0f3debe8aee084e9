"""The local twin of a model's serving container, chosen by the model's image (decision 0011).

    open_container(image, model_dir, environment) -> Container

    image                                         container                     speaks
    .../kmeans:1, local/sagemaker-kmeans:1        builtin_kmeans.KMeansContainer text/csv in, JSON out
    .../autogluon-inference:..., .../sagemaker-   automl.AutopilotContainer      text/csv in, text/csv out
      sklearn-automl:..., local/sagemaker-autopilot...
    anything else (XGBoost, SKLearn framework)    our inference.py               JSON in, JSON out

`sagelab serve` (the local endpoint) and the local runner's batch transform both score through
this one function, so a model answers the same way wherever it runs locally.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from sagelab.local.s3_paths import S3PathError, uri_path

MODEL_DIR_IN_CONTAINER = "/opt/ml/model/"  # SageMaker extracts model.tar.gz here
ContainerKind = Literal["kmeans", "autopilot", "script"]
# The last segment of an image's repository name, per container. Built-in K-Means lives in the
# region's algorithm registry as `kmeans`; Autopilot's ensembling candidates serve from
# `autogluon-inference`, its HPO candidates start with `sagemaker-sklearn-automl`.
KMEANS_REPOSITORIES = ("kmeans", "sagemaker-kmeans")
AUTOPILOT_REPOSITORY_PREFIXES = ("sagemaker-autopilot", "autogluon-inference", "sagemaker-sklearn-automl")


class Container(Protocol):
    """What SageMaker's container contract gives a caller: one request in, one answer out."""

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]: ...


class ContainerError(RuntimeError):
    """The model cannot be loaded into its container; the message says why and what to do."""


def repository_name(image: str) -> str:
    """`<registry>/<path>/<name>:<tag>` or `@<digest>` -> `<name>` (the last path segment)."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def container_kind(image: str) -> ContainerKind:
    name = repository_name(image)
    if name in KMEANS_REPOSITORIES:
        return "kmeans"
    if name.startswith(AUTOPILOT_REPOSITORY_PREFIXES):
        return "autopilot"
    return "script"


def open_container(image: str, model_dir: Path, environment: Mapping[str, str], *, s3_root: Path | None = None) -> Container:
    """The container `image` would run, serving the model extracted in `model_dir`.

    `environment` is the model's container environment (SAGEMAKER_PROGRAM, SAGEMAKER_SUBMIT_DIRECTORY
    for our scripts; Autopilot's SAGEMAKER_INFERENCE_* settings). `s3_root` (`<workdir>/s3`) is only
    needed for versions registered before the code moved into the model, whose code is a source
    archive in S3. Each container answers one request at a time, as a single-worker container does."""
    kind = container_kind(image)
    if kind == "kmeans":
        builtin_kmeans = importlib.import_module("sagelab.local.builtin_kmeans")
        return _OneAtATime(builtin_kmeans.KMeansContainer(Path(model_dir)))
    if kind == "autopilot":
        automl = importlib.import_module("sagelab.local.automl")
        return _OneAtATime(automl.AutopilotContainer(Path(model_dir), dict(environment)))
    return open_script_container(Path(model_dir), environment, s3_root=s3_root)


@dataclass
class _OneAtATime:
    inner: Container
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        with self.lock:
            return self.inner.invoke(body, content_type, accept)


@dataclass
class ScriptContainer:
    """A framework container (XGBoost, SKLearn) running our inference.py's four handlers."""

    module: ModuleType
    model: Any
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        with self.lock:
            data = self.module.input_fn(body, content_type)
            predictions = self.module.predict_fn(data, self.model)
            text, produced = self.module.output_fn(predictions, accept)
        return (text.encode() if isinstance(text, str) else text), produced


def open_script_container(model_dir: Path, environment: Mapping[str, str], *, s3_root: Path | None = None) -> ScriptContainer:
    """As the framework container starts: find the code (SAGEMAKER_SUBMIT_DIRECTORY: a folder inside
    the model, or a source archive in S3), import SAGEMAKER_PROGRAM, call its model_fn once."""
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    program = environment.get("SAGEMAKER_PROGRAM", "inference.py")
    if submit.startswith(MODEL_DIR_IN_CONTAINER):  # the code travels inside the model (network isolation)
        code_dir = model_dir / submit.removeprefix(MODEL_DIR_IN_CONTAINER)
        if not (code_dir / program).is_file():
            raise ContainerError(f"{program} is missing from {submit} in the model at {model_dir}")
    else:
        archive = _local_s3_path(s3_root, submit)
        if archive is None or not archive.is_file():
            raise ContainerError(f"source archive {submit!r} is missing from the local S3 ({s3_root}); SAGEMAKER_SUBMIT_DIRECTORY must name the model's code")
        code_dir = Path(tempfile.mkdtemp(prefix="sagelab-code-"))
        with tarfile.open(archive) as tar:
            tar.extractall(code_dir, filter="data")
    module = import_program(code_dir / program)
    return ScriptContainer(module=module, model=module.model_fn(str(model_dir)))


def _local_s3_path(s3_root: Path | None, uri: str) -> Path | None:
    if s3_root is None or not uri.startswith("s3://"):
        return None
    try:
        return uri_path(Path(s3_root), uri)
    except S3PathError:
        return None


def import_program(path: Path) -> ModuleType:
    # As the container does: the code dir first on sys.path, so inference.py's sibling imports
    # (`from preprocess import ...`) resolve to the registered code, not the working tree.
    sys.path.insert(0, str(path.parent))
    for sibling in ("preprocess", "inference"):
        sys.modules.pop(sibling, None)
    try:
        spec = importlib.util.spec_from_file_location(f"sagelab_served_{path.stem}_{uuid.uuid4().hex[:6]}", path)
        if spec is None or spec.loader is None:
            raise ContainerError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))
