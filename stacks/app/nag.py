"""cdk-nag 3 wiring: the rule packs every synth runs, and acknowledgments with reasons.

cdk-nag 3 plugs into CDK's own policy-validation API (`Validations.of(app).add_plugins(...)`);
the v2 Aspects API (`Aspects.of(app).add(AwsSolutionsChecks())`) no longer applies the packs.
Any finding not acknowledged here fails synthesis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks, ServerlessChecks
from constructs import IConstruct

NAG_PACKS = ("AwsSolutions", "Serverless", "NIST.800.53.R5")
MIN_REASON_LENGTH = 20


def add_nag_packs(app: IConstruct) -> None:
    """Register the three packs on the app (once per app)."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app), NIST80053R5Checks(app))


def acknowledge(scope: IConstruct, *rules: tuple[str, str]) -> None:
    """Acknowledge findings on `scope` (and its children): each rule id with a specific reason.

    A reason must say why the finding does not apply to *this* resource; empty or boilerplate
    reasons are refused so that the audit trail stays meaningful.
    """
    acknowledgments = []
    for rule_id, reason in rules:
        if not rule_id.startswith(tuple(f"{pack}-" for pack in NAG_PACKS)):  # e.g. "AwsSolutions-IAM5[Action::s3:*]" is fine
            raise ValueError(f"acknowledgment {rule_id!r} names no known pack ({', '.join(NAG_PACKS)})")
        if len(reason.strip()) < MIN_REASON_LENGTH:
            raise ValueError(f"acknowledgment {rule_id!r} on {scope.node.path} needs a specific reason (at least {MIN_REASON_LENGTH} characters)")
        pack = next(pack for pack in NAG_PACKS if rule_id.startswith(f"{pack}-"))
        # CDK's validation API keys acknowledgments by plugin: "<pack>::<rule>" covers every
        # finding of that rule (e.g. each wildcard of AwsSolutions-IAM5) on this scope.
        acknowledgments.append(Acknowledgment(id=f"{pack}::{rule_id}", reason=reason))
    Validations.of(scope).acknowledge(*acknowledgments)


def acknowledge_cdk_singleton_lambda(stack: Stack, construct_id_prefix: str, purpose: str) -> None:
    """Acknowledge the findings of a CDK-managed singleton Lambda (custom-resource provider).

    CDK creates these at the stack root with generated ids; they run only during CloudFormation
    deploys, with a CDK-chosen runtime and an AWS-managed basic-execution policy.
    """
    for child in stack.node.children:
        if not child.node.id.startswith(construct_id_prefix):
            continue
        default_policy = child.node.try_find_child("ServiceRole")
        default_policy = default_policy.node.try_find_child("DefaultPolicy") if default_policy else None
        if default_policy is not None:
            acknowledge_policy_wildcards(
                default_policy.node.default_child,  # type: ignore[arg-type]
                lambda _statement: (
                    f"CDK's {purpose} provider copies objects between the CDK asset bucket and this stack's buckets/prefixes; aws-cdk-lib writes these grants."
                ),
            )
        acknowledge(
            child,
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                f"CDK's {purpose} provider uses AWSLambdaBasicExecutionRole to write its own logs only.",
            ),
            ("AwsSolutions-L1", f"The {purpose} provider's runtime is chosen and upgraded by aws-cdk-lib releases, not by us."),
            ("Serverless-LambdaDLQ", f"The {purpose} provider is invoked synchronously by CloudFormation, which reports failures."),
            ("Serverless-LambdaTracing", f"The {purpose} provider runs only during deploys; CloudFormation events trace it."),
            ("Serverless-LambdaDefaultMemorySize", f"The {purpose} provider's memory is set by aws-cdk-lib."),
            ("Serverless-LambdaLatestVersion", f"The {purpose} provider's runtime is chosen and upgraded by aws-cdk-lib releases."),
            ("NIST.800.53.R5-LambdaConcurrency", f"The {purpose} provider runs once per deploy; concurrency limits add nothing."),
            ("NIST.800.53.R5-LambdaDLQ", f"The {purpose} provider is invoked synchronously by CloudFormation, which reports failures."),
            ("NIST.800.53.R5-LambdaInsideVPC", f"The {purpose} provider only calls S3 APIs during deploys; a VPC would need endpoints for nothing."),
            ("NIST.800.53.R5-IAMNoInlinePolicy", f"CDK attaches the {purpose} provider's grants as an inline default policy."),
        )


def _render(part: Any) -> str:
    """A *resolved* CloudFormation value in cdk-nag's spelling: `<Logical.Attr>`, `<Ref>`."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and "Ref" in part:
        return f"<{part['Ref']}>"
    if isinstance(part, dict) and "Fn::GetAtt" in part:
        logical_id, attribute = part["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    if isinstance(part, dict) and isinstance(part.get("Fn::ImportValue"), str):  # a named cross-stack export
        return str(part["Fn::ImportValue"])
    if isinstance(part, dict) and "Fn::Sub" in part and isinstance(part["Fn::Sub"], str):
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", part["Fn::Sub"])
    if isinstance(part, dict) and "Fn::Join" in part:
        separator, parts = part["Fn::Join"]
        return separator.join(_render(p) for p in parts)
    raise ValueError(f"cannot render {part!r} in cdk-nag notation")


def nag_notation(stack: Stack, value: Any) -> str:
    """A policy value as cdk-nag spells it in finding ids: tokens become `<Logical.Attr>`/`<Ref>`."""
    return _render(stack.resolve(value))


def wildcard_findings(statements: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The AwsSolutions-IAM5 finding ids a policy's *resolved* statements raise, each with its statement."""
    findings: list[tuple[str, dict[str, Any]]] = []
    for statement in statements:
        if statement.get("Effect") == "Deny":
            continue
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        for action in [actions] if isinstance(actions, str) else actions:
            if "*" in action:
                findings.append((f"AwsSolutions-IAM5[Action::{action}]", statement))
        for resource in [resources] if not isinstance(resources, list) else resources:
            rendered = _render(resource)
            if "*" in rendered:
                findings.append((f"AwsSolutions-IAM5[Resource::{rendered}]", statement))
    return findings


def acknowledge_policy_wildcards(policy: CfnResource, reason_for: Callable[[dict[str, Any]], str]) -> int:
    """Acknowledge each wildcard finding of an IAM policy resource, with the reason its statement
    gives. Call after every grant is in place: a wildcard added later stays a finding."""
    stack = Stack.of(policy)
    document = stack.resolve(policy.policy_document)  # type: ignore[attr-defined]
    statements = document.get("Statement", [])
    findings = wildcard_findings(statements)  # already resolved above: no jsii round trip per resource
    seen: set[str] = set()
    rules = []
    for finding_id, statement in findings:
        if finding_id in seen:
            continue
        seen.add(finding_id)
        rules.append((finding_id, reason_for(statement)))
    if rules:
        acknowledge(policy, *rules)
    return len(rules)


def acknowledge_tracing_grant(role: IConstruct, function_purpose: str) -> None:
    """CDK adds X-Ray permissions for active tracing to a Lambda role's default policy: resource
    "*" (X-Ray has no resource-level permissions) in an inline policy. Acknowledge both."""
    default_policy = role.node.find_child("DefaultPolicy").node.default_child
    if not isinstance(default_policy, CfnResource):
        raise ValueError(f"{role.node.path} has no default policy to acknowledge")
    acknowledge_policy_wildcards(
        default_policy, lambda _statement: "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permission (added by CDK for active tracing)."
    )
    acknowledge(
        role,
        (
            "NIST.800.53.R5-IAMNoInlinePolicy",
            f"CDK adds the X-Ray (and dead-letter) grants as the {function_purpose} role's default policy; its own permissions are a managed policy.",
        ),
    )
