"""Synth counts what the app's stacks take from each account's quotas (sagelab/quotas.py).

Runs at the end of `build_app`, before anything is written, so an app that would exceed a quota
fails synth with the quota's name. A stack built through the constructs is read from its
CloudFormation resources (type and resolved properties, only for the few types a quota counts);
a student's stamped stack from its stamped template (stacks/app/classroom.py), which is the template
that deploys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aws_cdk import CfnResource, Stack, Token

from sagelab.quotas import StackResources, check_quotas

# Only these types' properties are read; for the others the type alone counts.
_READ_PROPERTIES = {"AWS::Lambda::Function", "AWS::SageMaker::NotebookInstance", "AWS::SageMaker::EndpointConfig"}
# Of a managed policy, only the roles it attaches to (its document is large and not needed).
_MANAGED_POLICY = "AWS::IAM::ManagedPolicy"


def _pascal(value: Any) -> Any:
    """jsii's camelCase property structs as CloudFormation writes them (PascalCase keys)."""
    if isinstance(value, Mapping):
        return {key[:1].upper() + key[1:]: _pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pascal(item) for item in value]
    return value


def _built_resources(stack: Stack) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    resources = []
    for node in stack.node.find_all():
        if isinstance(node, CfnResource) and Stack.of(node) is stack:
            resource_type = node.cfn_resource_type
            if resource_type in _READ_PROPERTIES:
                props = _pascal(stack.resolve(node._cfn_properties))
            elif resource_type == _MANAGED_POLICY:
                props = {"Roles": stack.resolve(node._cfn_properties.get("roles")) or []}
            else:
                props = {}
            resources.append((resource_type, props))
    return tuple(resources)


def _template_resources(template_text: str) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    template = json.loads(template_text)
    return tuple((resource["Type"], resource.get("Properties", {})) for resource in template.get("Resources", {}).values())


def _where(value: str) -> str:
    return "" if Token.is_unresolved(value) else value


def stack_resources(stack: Stack, stamped_templates: Mapping[str, str]) -> StackResources:
    """`stack` as quotas see it; `stamped_templates` holds the stamped template of each student stack by name."""
    text = stamped_templates.get(stack.stack_name)
    resources = _template_resources(text) if text is not None else _built_resources(stack)
    return StackResources(stack_name=stack.stack_name, account=_where(stack.account), region=_where(stack.region), resources=resources)


def check_app_quotas(stacks: Iterable[Stack], stamped_templates: Mapping[str, str], declared: Iterable[tuple[str, int]]) -> None:
    """QuotaError (naming the quota and the numbers) when the stacks exceed a quota of an account."""
    check_quotas((stack_resources(stack, stamped_templates) for stack in stacks), dict(declared))
