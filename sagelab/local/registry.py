"""A local model registry under `<workdir>/registry/`, shaped like SageMaker's.

    registry/<group>/group.json                  the model package group
    registry/<group>/versions/<n>.json           one model package version (approval, metrics, artifact)

Versions are numbered from 1 per group, as SageMaker numbers them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why."""


@dataclass
class ModelPackage:
    group: str
    version: int
    approval_status: str
    model_data_url: str
    model_data_path: str
    image: str
    environment: dict[str, str]
    metrics_url: str | None
    metrics: dict[str, Any]
    created: str
    execution_id: str
    description: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    # CustomerMetadataProperties: `sagelab:algorithm`, `sagelab:problem-type`,
    # `sagelab:model-description` (decision 0011). Versions registered before it load with {}.
    customer_metadata: dict[str, str] = field(default_factory=dict)
    # DriftCheckBaselines.ModelDataQuality: {"statistics": uri, "constraints": uri} (decision 0013).
    drift_check_baselines: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:model-package/{self.group}/{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "arn": self.arn}


def _write_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2, sort_keys=True)
    os.replace(temporary, path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class LocalRegistry:
    def __init__(self, workdir: Path) -> None:
        self.root = Path(workdir) / "registry"

    def _group_dir(self, group: str) -> Path:
        if not group or "/" in group or group.startswith("."):
            raise RegistryError(f"model package group name {group!r} is not valid")
        return self.root / group

    def groups(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "group.json").exists())

    def register(
        self,
        *,
        group: str,
        approval_status: str,
        model_data_url: str,
        model_data_path: str,
        image: str,
        environment: dict[str, str],
        metrics_url: str | None,
        metrics: dict[str, Any],
        execution_id: str,
        description: str = "",
        customer_metadata: Mapping[str, str] | None = None,
        drift_check_baselines: Mapping[str, str] | None = None,
    ) -> ModelPackage:
        if approval_status not in APPROVAL_STATUSES:
            raise RegistryError(f"approval status {approval_status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
        group_dir = self._group_dir(group)
        if not (group_dir / "group.json").exists():
            _write_atomically(group_dir / "group.json", {"ModelPackageGroupName": group, "CreationTime": _now()})
        existing = [int(p.stem) for p in (group_dir / "versions").glob("*.json")] if (group_dir / "versions").exists() else []
        package = ModelPackage(
            group=group,
            version=max(existing, default=0) + 1,
            approval_status=approval_status,
            model_data_url=model_data_url,
            model_data_path=model_data_path,
            image=image,
            environment=environment,
            metrics_url=metrics_url,
            metrics=metrics,
            created=_now(),
            execution_id=execution_id,
            description=description,
            history=[{"status": approval_status, "at": _now()}],
            customer_metadata={str(k): str(v) for k, v in (customer_metadata or {}).items()},
            drift_check_baselines=dict(drift_check_baselines or {}),
        )
        _write_atomically(group_dir / "versions" / f"{package.version}.json", package.to_json())
        return package

    def versions(self, group: str | None = None) -> list[ModelPackage]:
        groups = [group] if group else self.groups()
        packages = []
        for name in groups:
            versions_dir = self._group_dir(name) / "versions"
            if not versions_dir.exists():
                if group:
                    raise RegistryError(f"no model package group {group!r} in {self.root}; groups: {', '.join(self.groups()) or 'none'}")
                continue
            for path in sorted(versions_dir.glob("*.json"), key=lambda p: int(p.stem)):
                data = json.loads(path.read_text())
                data.pop("arn", None)
                packages.append(ModelPackage(**data))
        return packages

    def get(self, group: str, version: int) -> ModelPackage:
        for package in self.versions(group):
            if package.version == version:
                return package
        raise RegistryError(f"model package group {group!r} has no version {version}")

    def set_status(self, group: str, version: int, status: str) -> ModelPackage:
        if status not in APPROVAL_STATUSES:
            raise RegistryError(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
        package = self.get(group, version)
        package.approval_status = status
        package.history.append({"status": status, "at": _now()})
        _write_atomically(self._group_dir(group) / "versions" / f"{version}.json", package.to_json())
        return package

    def latest_approved(self, group: str | None = None) -> ModelPackage | None:
        approved = [p for p in self.versions(group) if p.approval_status == "Approved"]
        return max(approved, key=lambda p: (p.created, p.version)) if approved else None
