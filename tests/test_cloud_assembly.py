"""The one reader of a cloud assembly (sagelab/cloud_assembly.py): what it reads from a manifest,
what it skips, and the errors a missing or garbled cdk.out gives (`sagelab synth-summary`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sagelab.cloud_assembly import UNKNOWN_ACCOUNT, UNKNOWN_REGION, AssemblyError, AssemblyStack, assembly_stacks
from tests.conftest import Cli, SynthResult


def _write_assembly(root: Path, artifacts: dict[str, Any], templates: dict[str, dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"version": "48.0.0", "artifacts": artifacts}))
    for name, template in templates.items():
        (root / name).write_text(json.dumps(template))
    return root


# As CDK writes them: a stack, its asset manifest, a second stack (named otherwise) depending on
# both kinds of artifact, an environment-agnostic third, and artifacts that are no stacks.
ARTIFACTS: dict[str, Any] = {
    "a.assets": {"type": "cdk:asset-manifest", "properties": {"file": "a.assets.json"}},
    "a": {
        "type": "aws:cloudformation:stack",
        "environment": "aws://111122223333/eu-west-1",
        "properties": {"templateFile": "a.template.json", "tags": {"environment": "dev"}, "terminationProtection": True},
        "dependencies": ["a.assets"],
    },
    "b": {
        "type": "aws:cloudformation:stack",
        "environment": "aws://unknown-account/us-east-1",
        "properties": {"templateFile": "b.template.json", "stackName": "sagelab-b"},
        "dependencies": ["a", "b.assets"],
    },
    "b.assets": {"type": "cdk:asset-manifest", "properties": {"file": "b.assets.json"}},
    "c": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "c.template.json"}},
    "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
    "aws-cdk-lib/feature-flag-report": {"type": "cdk:feature-flag-report", "properties": {}},
}
TEMPLATES = {f"{name}.template.json": {"Resources": {f"R{name}": {"Type": "AWS::SNS::Topic"}}} for name in "abc"}


def test_stacks_are_read_in_the_manifests_order_with_their_entries(tmp_path: Path) -> None:
    root = _write_assembly(tmp_path / "cdk.out", ARTIFACTS, TEMPLATES)
    a, b, c = assembly_stacks(root)
    assert a == AssemblyStack(
        artifact_id="a",
        stack_name="a",
        account="111122223333",
        region="eu-west-1",
        tags={"environment": "dev"},
        termination_protection=True,
        dependencies=(),
        template_file=root / "a.template.json",
        asset_manifest_file=root / "a.assets.json",
    )
    assert (b.artifact_id, b.stack_name, b.account, b.region, b.tags, b.termination_protection) == ("b", "sagelab-b", UNKNOWN_ACCOUNT, "us-east-1", {}, False)
    assert b.dependencies == ("a",) and b.asset_manifest_file == root / "b.assets.json"  # asset manifests are no stacks
    assert (c.account, c.region, c.asset_manifest_file) == (UNKNOWN_ACCOUNT, UNKNOWN_REGION, None)
    assert b.template() == TEMPLATES["b.template.json"] and json.loads(c.template_text()) == TEMPLATES["c.template.json"]


def test_a_manifest_without_artifacts_has_no_stacks(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"version": "48.0.0"}')
    assert assembly_stacks(tmp_path) == ()


def test_the_real_assembly_reads_as_the_app_built_it(synthesized: SynthResult) -> None:
    platform, serving = assembly_stacks(synthesized.outdir)
    assert [platform.stack_name, serving.stack_name] == sorted(synthesized.templates) == ["sagelab-dev--platform", "sagelab-dev--serving"]
    assert serving.dependencies == (platform.artifact_id,)
    assert (serving.account, serving.region, serving.tags["environment"]) == (UNKNOWN_ACCOUNT, "us-east-1", "dev")
    assert serving.asset_manifest_file is not None and serving.template_file.name in serving.asset_manifest_file.read_text()


@pytest.mark.parametrize(
    ("garble", "message"),
    [
        (lambda root: None, "no cloud assembly there (no manifest.json); synthesize first"),
        (lambda root: (root / "manifest.json").write_text('{"artifacts": '), "manifest.json: not valid JSON (Expecting value"),
        (lambda root: (root / "manifest.json").write_text("[]"), "manifest.json: expected a JSON object, found list"),
        (lambda root: (root / "manifest.json").write_text('{"artifacts": []}'), "manifest.json: `artifacts` is not an object"),
        (
            lambda root: (root / "manifest.json").write_text('{"artifacts": {"s": {"type": "aws:cloudformation:stack", "properties": {}}}}'),
            "manifest.json: stack s names no templateFile",
        ),
        (lambda root: (root / "a.template.json").unlink(), "a.template.json: stack a's template is missing; synthesize again"),
        (lambda root: (root / "b.template.json").write_text("{"), "b.template.json: not valid JSON"),
    ],
    ids=["missing", "manifest-not-json", "manifest-not-object", "artifacts-not-object", "no-template-file", "template-missing", "template-not-json"],
)
def test_a_missing_or_garbled_cdk_out_is_a_usage_error_naming_the_file(tmp_path: Path, cli: Cli, garble: Any, message: str) -> None:
    root = tmp_path / "cdk.out"
    if not message.startswith("no cloud assembly"):  # else: no cdk.out at all
        _write_assembly(root, ARTIFACTS, TEMPLATES)
        garble(root)
    with pytest.raises(AssemblyError, match=re.escape(message)):
        [stack.template() for stack in assembly_stacks(root)]
    result = cli("synth-summary", root)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.startswith("sagelab: error: ") and message in result.stderr and "Traceback" not in result.stderr


def test_synth_summary_counts_the_manifests_stacks_only(tmp_path: Path, cli: Cli) -> None:
    """cdk.out keeps the templates of earlier synths: only the manifest's stacks count."""
    root = _write_assembly(tmp_path / "cdk.out", ARTIFACTS, {**TEMPLATES, "old.template.json": {"Resources": {"X": {}, "Y": {}}}})
    result = cli("synth-summary", root)
    assert result.returncode == 0 and result.stdout.startswith("synth: 3 stacks, 3 resources, 0 acknowledged"), result
