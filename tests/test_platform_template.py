"""Security properties of the platform stack, asserted on the synthesized template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

STACK = "sagelab-dev--platform"


@pytest.fixture(scope="module")
def template(platform_template: dict[str, Any]) -> Template:
    return Template.from_json(platform_template)


def resources_of(template_json: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == resource_type}


def test_kms_key_rotates_and_is_retained(template: Template) -> None:
    template.has_resource("AWS::KMS::Key", {"Properties": {"EnableKeyRotation": True}, "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"})
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/sagelab-dev--key"})


def test_every_bucket_is_private_versioned_retained_and_encrypted(platform_template: dict[str, Any]) -> None:
    buckets = resources_of(platform_template, "AWS::S3::Bucket")
    assert len(buckets) == 3
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert bucket["DeletionPolicy"] == "Retain", logical_id
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_data_and_artifacts_buckets_use_the_key_and_log_access(platform_template: dict[str, Any]) -> None:
    buckets = resources_of(platform_template, "AWS::S3::Bucket")
    key_id = next(iter(resources_of(platform_template, "AWS::KMS::Key")))
    logged = {k: v for k, v in buckets.items() if "LoggingConfiguration" in v["Properties"]}
    assert {k.split("Storage")[1][:4] for k in logged} == {"Data", "Arti"}
    for bucket in logged.values():
        rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
        assert rule["BucketKeyEnabled"] is True
        target = bucket["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
        assert buckets[target]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }


def test_scratch_prefixes_expire_and_nothing_else_does(platform_template: dict[str, Any]) -> None:
    for logical_id, bucket in resources_of(platform_template, "AWS::S3::Bucket").items():
        rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        if "LoggingConfiguration" not in bucket["Properties"]:
            continue  # the access-log bucket expires its logs by design
        expiring = {r.get("Prefix"): r["ExpirationInDays"] for r in rules if "ExpirationInDays" in r}
        captured = {"data-capture/": 30} if logical_id.startswith("StorageArtifacts") else {}  # the endpoint's captured requests
        assert expiring == {"scratch/": 14, "pipeline-runs/": 14, **captured}, logical_id


def test_buckets_deny_insecure_transport(platform_template: dict[str, Any]) -> None:
    policies = resources_of(platform_template, "AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements)
        assert any(s["Effect"] == "Deny" and s["Condition"].get("NumericLessThan", {}).get("s3:TlsVersion") == 1.2 for s in statements)


def test_every_taggable_resource_carries_project_environment_owner(platform_template: dict[str, Any]) -> None:
    expected = {"project": "sagelab", "environment": "dev", "owner": "platform-team"}
    for resource_type in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::IAM::Role", "AWS::SageMaker::Pipeline", "AWS::SageMaker::ModelPackageGroup"):
        for logical_id, resource in resources_of(platform_template, resource_type).items():
            tags = {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}
            assert expected.items() <= tags.items(), f"{logical_id} tags {tags}"


def _role_policy_documents(platform_template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    roles = [k for k in resources_of(platform_template, "AWS::IAM::Role") if k.startswith(role_prefix)]
    assert len(roles) == 1, roles
    docs = []
    for policy in resources_of(platform_template, "AWS::IAM::ManagedPolicy").values():
        if {"Ref": roles[0]} in policy["Properties"].get("Roles", []):
            docs.append(policy["Properties"]["PolicyDocument"])
    return docs


@pytest.mark.parametrize("role_prefix", ["RolesPipelineRole", "RolesNotebookRole", "RolesEndpointRole"])
def test_roles_are_least_privilege(platform_template: dict[str, Any], role_prefix: str) -> None:
    documents = _role_policy_documents(platform_template, role_prefix)
    assert documents, f"{role_prefix} has no customer-managed policy"
    bucket_ids = set(resources_of(platform_template, "AWS::S3::Bucket"))
    for document in documents:
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a == "*" or a.endswith(":*") for a in actions), statement
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            text = json.dumps(resources)
            if any(a.startswith("s3:") for a in actions):
                # S3 access names this environment's buckets only (by logical id), never "*".
                assert '*"' not in text.replace('/*"', "") and any(b in text for b in bucket_ids), statement
            if resources == ["*"]:
                # Actions IAM authorizes only on "*" (no resource-level permission).
                assert set(actions) <= {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "sagemaker:ListCandidatesForAutoMLJob"}, statement
                if "cloudwatch:PutMetricData" in actions:
                    assert "cloudwatch:namespace" in json.dumps(statement["Condition"])


def test_roles_trust_only_sagemaker_and_use_no_aws_managed_policies(platform_template: dict[str, Any]) -> None:
    for logical_id, role in resources_of(platform_template, "AWS::IAM::Role").items():
        if not logical_id.startswith("Roles"):
            continue
        statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in statements] == [{"Service": "sagemaker.amazonaws.com"}]
        assert "ManagedPolicyArns" not in role["Properties"] or all("Ref" in arn for arn in role["Properties"]["ManagedPolicyArns"])


def test_pipeline_role_passes_only_itself_to_sagemaker(platform_template: dict[str, Any]) -> None:
    statements = [s for d in _role_policy_documents(platform_template, "RolesPipelineRole") for s in d["Statement"] if s["Action"] == "iam:PassRole"]
    assert len(statements) == 1
    role_id = next(k for k in resources_of(platform_template, "AWS::IAM::Role") if k.startswith("RolesPipelineRole"))
    assert statements[0]["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert statements[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_key_use_is_scoped_to_the_environment_key(platform_template: dict[str, Any]) -> None:
    key_id = next(iter(resources_of(platform_template, "AWS::KMS::Key")))
    for prefix in ("RolesPipelineRole", "RolesNotebookRole", "RolesEndpointRole"):
        for document in _role_policy_documents(platform_template, prefix):
            for statement in document["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(a.startswith("kms:") for a in actions):
                    assert statement["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_pipeline_and_model_group_are_named_and_wired(template: Template, platform_template: dict[str, Any]) -> None:
    template.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "sagelab-dev--models"})
    template.has_resource("AWS::SageMaker::ModelPackageGroup", {"DeletionPolicy": "Retain"})
    template.has_resource_properties(
        "AWS::SageMaker::Pipeline",
        {
            "PipelineName": "sagelab-dev--pipeline",
            "RoleArn": {"Fn::GetAtt": [Match.string_like_regexp("^RolesPipelineRole"), "Arn"]},
            "PipelineDefinition": {"PipelineDefinitionBody": {"Fn::Sub": Match.any_value()}},
        },
    )
    pipeline = next(iter(resources_of(platform_template, "AWS::SageMaker::Pipeline").values()))
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    json.loads(body)  # the body is the SDK's JSON with ${...} placeholders
    assert set(variables) == {
        "ArtifactsBucket",
        "DataBucket",
        "CodeVersion",
        "PipelineRoleName",
        "KmsKeyArn",
        "ModelPackageGroupName",
        "JobNamePrefix",
        "SklearnImageUri",
        "XgboostImageUri",
        "KmeansImageUri",
    }
    assert variables["XgboostImageUri"].startswith("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5")
    assert variables["KmeansImageUri"] == "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1", "the region's built-in K-Means image"
    # Every ${...} left in the body is a variable or a CloudFormation pseudo parameter.
    import re

    names = set(re.findall(r"\$\{([^}]+)\}", body))
    assert names <= set(variables) | {"AWS::Partition", "AWS::AccountId", "AWS::Region"}
    assert pipeline["DependsOn"], "the pipeline waits for its code and dataset deployments"


def test_code_and_dataset_are_published_and_kept(platform_template: dict[str, Any]) -> None:
    deployments = resources_of(platform_template, "Custom::CDKBucketDeployment")
    prefixes = sorted(d["Properties"]["DestinationBucketKeyPrefix"] for d in deployments.values())
    assert prefixes[0] == "datasets/digits/"
    assert prefixes[1].startswith("pipeline-code/") and len(prefixes[1]) == len("pipeline-code/") + 17
    assert all(d["Properties"]["RetainOnDelete"] is True for d in deployments.values())


def test_outputs_name_what_operators_need(platform_template: dict[str, Any]) -> None:
    assert {"DataBucketName", "ArtifactsBucketName", "PipelineName", "ModelPackageGroupName", "KmsKeyArn"} <= set(platform_template["Outputs"])


def test_destroy_is_an_explicit_opt_in(tmp_path: Path) -> None:
    from tests.conftest import synth

    config = tmp_path / "throwaway.yaml"
    config.write_text("defaults:\n  removal_policy: destroy\n")
    template = synth(tmp_path / "out", {"config": str(config)}).template(STACK)  # cdk-nag still clean, or synth raises
    buckets = resources_of(template, "AWS::S3::Bucket")
    # The access-log bucket is always retained (tests/test_data_protection.py proves which one).
    assert sorted(b["DeletionPolicy"] for b in buckets.values()) == ["Delete", "Delete", "Retain"]
    assert len(resources_of(template, "Custom::S3AutoDeleteObjects")) == 2
    assert next(iter(resources_of(template, "AWS::KMS::Key").values()))["DeletionPolicy"] == "Delete"
