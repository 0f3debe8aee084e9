"""What synth counts toward account quotas from a stack built through the constructs
(stacks/app/account_quotas.py): its own resources, each with its CloudFormation type, read with as
few jsii round trips as it can (the type from the resource's L1 class; `Stack.of` only when the
stack has nested stacks)."""

from __future__ import annotations

from aws_cdk import App, CfnResource, CustomResource, NestedStack, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

from stacks.app.account_quotas import stack_resources


def _by_construct(stack: Stack) -> list[tuple[str, str]]:
    """The reference: every CfnResource whose stack is `stack`, typed by the resource itself."""
    return sorted((node.node.path, node.cfn_resource_type) for node in stack.node.find_all() if isinstance(node, CfnResource) and Stack.of(node) is stack)


def test_a_stack_counts_its_own_resources_with_their_types_and_not_its_nested_stacks() -> None:
    app = App()
    stack = Stack(app, "Counted")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    iam.ManagedPolicy(stack, "Policy", roles=[role], statements=[iam.PolicyStatement(actions=["sns:Publish"], resources=["*"])])
    lambda_.Function(
        stack,
        "Function",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): pass"),
        reserved_concurrent_executions=3,
    )
    CustomResource(stack, "Custom", service_token="arn:aws:lambda:us-east-1:111111111111:function:x", resource_type="Custom::Thing")
    CfnResource(stack, "Plain", type="AWS::SQS::Queue")  # CfnResource itself: the type is the instance's
    flat = stack_resources(stack)
    assert sorted(resource_type for resource_type, _ in flat.resources) == sorted(t for _, t in _by_construct(stack))
    assert {"Custom::Thing", "AWS::SQS::Queue", "AWS::IAM::ManagedPolicy", "AWS::Lambda::Function"} <= {t for t, _ in flat.resources}
    assert ("AWS::Lambda::Function", {"ReservedConcurrentExecutions": 3}) in flat.resources

    nested = NestedStack(stack, "Nested")
    sns.Topic(nested, "InNested")
    s3.CfnBucket(nested, "AlsoInNested")
    with_nested = stack_resources(stack)
    types = sorted(resource_type for resource_type, _ in with_nested.resources)
    # The parent gains the nested stack's own resource (AWS::CloudFormation::Stack), not what is inside it.
    assert types == sorted(t for _, t in _by_construct(stack))
    assert "AWS::SNS::Topic" not in types and "AWS::S3::Bucket" not in types
    assert types == sorted([*(t for t, _ in flat.resources), "AWS::CloudFormation::Stack"])
