"""The stacks of a synthesized CDK cloud assembly (`cdk.out`), read from its `manifest.json`.

The one reader of a cloud assembly: cost estimates (sagelab/costs.py), `sagelab synth-summary`,
the classroom's template environments (stacks/app/classroom.py) and the tests read stacks
through it. The manifest, not a listing of the directory, says which files belong to the
synth: cdk.out keeps the files of earlier synths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STACK = "aws:cloudformation:stack"
ASSET_MANIFEST = "cdk:asset-manifest"
# The environment CDK writes for a stack without an account or region.
UNKNOWN_ACCOUNT, UNKNOWN_REGION = "unknown-account", "unknown-region"


class AssemblyError(ValueError):
    """A directory that is not a readable cloud assembly (missing, or its files garbled)."""


@dataclass(frozen=True)
class AssemblyStack:
    """One stack artifact of a cloud assembly."""

    artifact_id: str  # its construct path id: the key of the manifest's artifacts
    stack_name: str  # the CloudFormation stack name (the artifact id unless set otherwise)
    account: str  # from `aws://ACCOUNT/REGION`: UNKNOWN_ACCOUNT when environment-agnostic
    region: str
    tags: Mapping[str, str]
    termination_protection: bool
    dependencies: tuple[str, ...]  # artifact ids of the assembly's other stacks (asset manifests aside)
    template_file: Path
    asset_manifest_file: Path | None  # its assets (`<id>.assets.json`), where its synthesizer writes one

    def template_text(self) -> str:
        try:
            return self.template_file.read_text()
        except FileNotFoundError:
            raise AssemblyError(f"{self.template_file}: stack {self.artifact_id}'s template is missing; synthesize again") from None

    def template(self) -> dict[str, Any]:
        return _json_object(self.template_file, self.template_text())


def assembly_stacks(outdir: str | Path) -> tuple[AssemblyStack, ...]:
    """The stacks of the cloud assembly in `outdir`, in the manifest's order. Other artifacts
    (asset manifests, the tree, nested assemblies, feature-flag reports) are skipped."""
    root = Path(outdir)
    path = root / "manifest.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AssemblyError(f"{root}: no cloud assembly there (no manifest.json); synthesize first (`cdk synth`)") from None
    artifacts = _json_object(path, text).get("artifacts", {})
    if not isinstance(artifacts, dict):
        raise AssemblyError(f"{path}: `artifacts` is not an object; synthesize again")
    return tuple(_stack(root, path, artifact_id, artifact, artifacts) for artifact_id, artifact in artifacts.items() if artifact.get("type") == STACK)


def _stack(root: Path, path: Path, artifact_id: str, artifact: dict[str, Any], artifacts: dict[str, Any]) -> AssemblyStack:
    properties = artifact.get("properties", {})
    if not isinstance(properties.get("templateFile"), str):
        raise AssemblyError(f"{path}: stack {artifact_id} names no templateFile; synthesize again")
    account, _, region = artifact.get("environment", f"aws://{UNKNOWN_ACCOUNT}/{UNKNOWN_REGION}").removeprefix("aws://").partition("/")
    # Dependencies name artifacts: the stacks it waits for, and its own asset manifest.
    dependencies = {d: artifacts.get(d, {}) for d in artifact.get("dependencies", [])}
    asset_files = [d["properties"]["file"] for d in dependencies.values() if d.get("type") == ASSET_MANIFEST]
    return AssemblyStack(
        artifact_id=artifact_id,
        stack_name=properties.get("stackName", artifact_id),
        account=account,
        region=region,
        tags=properties.get("tags", {}),
        termination_protection=properties.get("terminationProtection", False),
        dependencies=tuple(d for d, dependency in dependencies.items() if dependency.get("type") == STACK),
        template_file=root / properties["templateFile"],
        asset_manifest_file=root / asset_files[0] if asset_files else None,
    )


def _json_object(path: Path, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise AssemblyError(f"{path}: not valid JSON ({error}); synthesize again") from None
    if not isinstance(value, dict):
        raise AssemblyError(f"{path}: expected a JSON object, found {type(value).__name__}; synthesize again")
    return value
