"""Synth counts what the app's stacks take from each account's quotas (sagelab/quotas.py).

Runs at the end of `build_app`, before anything is written, so an app that would exceed a quota
fails synth with the quota's name. A stack built through the constructs is read from its
CloudFormation resources (type and resolved properties, only for the few types a quota counts);
a student's stamped stack from its template (stacks/app/classroom.py), which is what deploys.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aws_cdk import CfnResource, Stack, Token

from sagelab.quotas import StackResources, check_quotas
from stacks.app.classroom import PLACEHOLDERS, StampedStack

# The properties a quota reads (sagelab/quotas.py), by resource type; of the other types the type
# alone counts. Only these are kept, so that a stamped copy's count can be taken from its template.
_READ_FIELDS: Mapping[str, tuple[str, ...]] = {
    "AWS::Lambda::Function": ("ReservedConcurrentExecutions",),
    "AWS::SageMaker::NotebookInstance": ("InstanceType",),
    "AWS::SageMaker::EndpointConfig": ("ProductionVariants",),
    "AWS::IAM::ManagedPolicy": ("Roles",),
}
_MANAGED_POLICY = "AWS::IAM::ManagedPolicy"


def _read(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    return {field: props[field] for field in _READ_FIELDS.get(resource_type, ()) if field in props}


def _pascal(value: Any) -> Any:
    """jsii's camelCase property structs as CloudFormation writes them (PascalCase keys)."""
    if isinstance(value, Mapping):
        return {key[:1].upper() + key[1:]: _pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pascal(item) for item in value]
    return value


@functools.cache
def _type_of_class(cls: type) -> str | None:
    """The resource type every instance of a generated L1 class (`CfnBucket`, ...) has, read once
    per class; None for CfnResource itself (custom resources), whose instances each say theirs."""
    type_name = getattr(cls, "CFN_RESOURCE_TYPE_NAME", None)
    return type_name if isinstance(type_name, str) else None


def _resource_type(node: CfnResource) -> str:
    return _type_of_class(type(node)) or node.cfn_resource_type


def _built_resources(stack: Stack) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    # Each read through jsii is a round trip to Node (~0.35 ms of CPU). Without nested stacks
    # every resource found under the stack is the stack's own (no `Stack.of` per resource), and
    # the type comes from the resource's L1 class (once per class, not once per resource).
    nodes = stack.node.find_all()
    nested = any(isinstance(node, Stack) and node is not stack for node in nodes)
    resources = []
    for node in nodes:
        if isinstance(node, CfnResource) and (not nested or Stack.of(node) is stack):
            resource_type = _resource_type(node)
            props: Mapping[str, Any]
            if resource_type == _MANAGED_POLICY:  # its document is large and not needed
                props = {"Roles": stack.resolve(node._cfn_properties.get("roles")) or []}
            elif resource_type in _READ_FIELDS:
                props = _read(resource_type, _pascal(stack.resolve(node._cfn_properties)))
            else:
                props = {}
            resources.append((resource_type, props))
    return tuple(resources)


def _template_resources(template_text: str) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    template = json.loads(template_text)
    return tuple((resource["Type"], _read(resource["Type"], resource.get("Properties", {}))) for resource in template.get("Resources", {}).values())


def _where(value: str) -> str:
    return "" if Token.is_unresolved(value) else value


def stack_resources(stack: Stack) -> StackResources:
    """A stack built through the constructs, as quotas see it."""
    return StackResources(stack_name=stack.stack_name, account=_where(stack.account), region=_where(stack.region), resources=_built_resources(stack))


@functools.lru_cache(maxsize=16)
def _placeholder_free_resources(template_environment_text: str) -> tuple[tuple[str, Mapping[str, Any]], ...] | None:
    """The resources of a template environment's template, or None when a placeholder occurs in
    what a quota reads."""
    resources = _template_resources(template_environment_text)
    read = json.dumps([props for resource_type, props in resources if props])
    return None if any(placeholder in read for placeholder in PLACEHOLDERS) else resources


def stamped_stack_resources(stack: StampedStack) -> StackResources:
    """A student's stamped stack, as quotas see it: what its template takes. Stamping replaces the
    placeholders inside JSON strings only, so a copy has its template environment's resource types
    and counts; when no placeholder occurs in the properties a quota reads (instance types and
    counts, reserved concurrency, a managed policy's roles: none is derived from a student), those
    are the template's too, and the template is parsed once per shape instead of once per student.
    Otherwise the stamped template itself is read."""
    resources = _placeholder_free_resources(stack.template_environment_text)
    if resources is None:
        resources = _template_resources(stack.template_text)
    return StackResources(stack_name=stack.stamped_name, account=stack.quota_account, region=stack.quota_region, resources=resources)


def check_app_quotas(built: Iterable[Stack], stamped: Iterable[StampedStack], declared: Iterable[tuple[str, int]]) -> None:
    """QuotaError (naming the quota and the numbers) when the stacks exceed a quota of an account."""
    counted = itertools.chain((stack_resources(stack) for stack in built), (stamped_stack_resources(stack) for stack in stamped))
    check_quotas(counted, dict(declared))
