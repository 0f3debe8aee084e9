"""The container contract every job step shares: `/opt/ml/...` mapped into the step's sandbox,
archives as SageMaker writes and extracts them, job names as Pipelines gives them."""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

from sagelab.local.runner.errors import PipelineError

CONTAINER_ROOT = "/opt/ml"


def job_name(prefix: Any, step_name: str) -> str:
    """A job name as SageMaker Pipelines gives it: the definition's name field (a prefix, with
    custom job prefixes on) plus a random part; `pipelines-<step>-...` without one."""
    base = prefix if isinstance(prefix, str) and prefix else f"pipelines-{step_name.lower()}"
    return f"{base}-{uuid.uuid4().hex[:10]}"


def container_path(root: Path, path_in_container: str) -> Path:
    if not path_in_container.startswith(CONTAINER_ROOT):
        raise PipelineError(f"container path {path_in_container!r} is outside {CONTAINER_ROOT}")
    return root / path_in_container.lstrip("/")


def map_container_arg(root: Path, argument: str) -> str:
    return str(container_path(root, argument)) if argument.startswith(CONTAINER_ROOT + "/") or argument == CONTAINER_ROOT else argument


def maybe_extract(directory: Path, compression: str | None) -> None:
    if compression != "Gzip":
        return
    for archive in list(directory.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(directory, filter="data")


def write_tar_gz(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)


def json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
