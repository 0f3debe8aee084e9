"""cdk-nag 3 gates: our constructs pass the three packs; the gate does fail non-compliant code;
every acknowledgment in the real app carries a specific reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from sagelab.cli import synth_summary
from sagelab.settings import cdk_context
from stacks.app.nag import MIN_REASON_LENGTH, acknowledge, add_nag_packs, nag_notation, wildcard_findings
from stacks.data_buckets.construct import DataBuckets
from tests.conftest import SynthResult, read_json


def synth_with_nag(tmp_path: Path, build) -> None:  # type: ignore[no-untyped-def]
    app = App(outdir=str(tmp_path), context=cdk_context())
    stack = Stack(app, "Probe")
    build(stack)
    add_nag_packs(app)
    app.synth()


def test_data_buckets_pass_all_three_packs(tmp_path: Path) -> None:
    synth_with_nag(tmp_path, lambda stack: DataBuckets(stack, "Storage", key_alias="alias/probe", environment="probe"))


def test_a_plain_bucket_fails_the_gate(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synth_with_nag(tmp_path, lambda stack: s3.Bucket(stack, "Plain"))
    report = read_json(tmp_path / "validation-report.json")
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10", "NIST.800.53.R5-S3DefaultEncryptionKMS"} <= rules


def test_an_unacknowledged_wildcard_fails_and_an_acknowledged_one_passes(tmp_path: Path) -> None:
    def wildcard_role(stack: Stack, acknowledged: bool) -> None:
        policy = iam.ManagedPolicy(stack, "Policy", statements=[iam.PolicyStatement(actions=["s3:GetObject"], resources=["arn:aws:s3:::probe-bucket/*"])])
        iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"), managed_policies=[policy])
        if acknowledged:
            acknowledge(policy, ("AwsSolutions-IAM5[Resource::arn:aws:s3:::probe-bucket/*]", "Objects of the probe bucket are created at run time."))

    with pytest.raises(RuntimeError):
        synth_with_nag(tmp_path / "bad", lambda stack: wildcard_role(stack, acknowledged=False))
    synth_with_nag(tmp_path / "good", lambda stack: wildcard_role(stack, acknowledged=True))


def test_acknowledgments_need_a_reason_and_a_known_pack(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path), context=cdk_context())
    stack = Stack(app, "Probe")
    with pytest.raises(ValueError, match="needs a specific reason"):
        acknowledge(stack, ("AwsSolutions-S1", "ok"))
    with pytest.raises(ValueError, match="names no known pack"):
        acknowledge(stack, ("Custom-S1", "a long enough reason that names nothing"))


def test_nag_notation_matches_cdk_nag_finding_ids(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path), context=cdk_context())
    stack = Stack(app, "Probe")
    bucket = s3.Bucket(stack, "Data")
    statements = [{"Effect": "Allow", "Action": ["s3:Get*"], "Resource": [stack.resolve(f"{bucket.bucket_arn}/*")]}]
    findings = [finding for finding, _ in wildcard_findings(statements)]
    logical_id = stack.get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
    assert findings == ["AwsSolutions-IAM5[Action::s3:Get*]", f"AwsSolutions-IAM5[Resource::<{stack.resolve(logical_id)}.Arn>/*]"]
    assert nag_notation(stack, {"Fn::Sub": "arn:${AWS::Partition}:s3:::x"}) == "arn:<AWS::Partition>:s3:::x"


def test_real_app_has_no_unacknowledged_findings_and_every_reason_is_specific(synthesized: SynthResult) -> None:
    summary = synth_summary(synthesized.outdir)
    assert summary["unacknowledged_findings"] == 0
    assert summary["acknowledged_findings"] > 0
    report = read_json(synthesized.outdir / "validation-report.json")
    assert {p["pluginName"] for p in report["pluginReports"]} == {"AwsSolutions", "Serverless", "NIST.800.53.R5"}
    for plugin in report["pluginReports"]:
        for suppressed in plugin["suppressedViolations"]:
            assert len(suppressed["reason"]) >= MIN_REASON_LENGTH, suppressed
