"""What CloudFormation needs to create, update and delete a resource type, from the CloudFormation
registry's resource provider schemas (`handlers.<create|update|delete>.permissions`), which
cfn-lint ships (`cfnlint/data/schemas/providers/<region>.json` indexes `resources/<hash>.json`).

One derivation for every role CloudFormation acts with: the approval deployer's deployment role
(tests/test_sufficiency.py checks it) and the execution policy of every own-account student's CDK
bootstrap (stacks/bootstrap). cfn-lint is a development dependency, so the bootstrap's policy is
derived here and checked in (`stacks/bootstrap/execution_policy.json`); tests/test_bootstrap.py
derives it again from the synthesized student templates and fails when the two differ.

    .venv/bin/python -m sagelab.registry_permissions TYPE [TYPE ...]   # the actions, one a line
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HANDLERS = ("create", "update", "delete")
# A custom resource has no schema: CloudFormation invokes its ServiceToken (a Lambda function)
# with the stack's role. CDK's custom resources (Custom::CDKBucketDeployment, ...) are all Lambda-backed.
CUSTOM_RESOURCE_ACTIONS = frozenset({"lambda:InvokeFunction"})
IAM_POLICY_LIMIT = 6144  # characters of a managed policy document, whitespace excluded


def _schemas() -> Path:
    import cfnlint  # development dependency: see the module docstring

    return Path(cfnlint.__file__).parent / "data" / "schemas"


def handler_permissions(resource_type: str, handlers: tuple[str, ...] = HANDLERS, region: str = "us-east-1") -> set[str]:
    """The permissions the registry lists for these handlers of `resource_type`."""
    if resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource":
        return set(CUSTOM_RESOURCE_ACTIONS)
    schemas = _schemas()
    index = json.loads((schemas / "providers" / f"{region}.json").read_text())
    if resource_type not in index:
        raise KeyError(f"{resource_type} has no provider schema in cfn-lint's registry data for {region}")
    schema = json.loads((schemas / "resources" / f"{index[resource_type]}.json").read_text())
    return {p for h in handlers for p in schema.get("handlers", {}).get(h, {}).get("permissions", [])}


def execution_actions(resource_types: Iterable[str]) -> list[str]:
    """Every action CloudFormation needs to manage these types, sorted."""
    actions: set[str] = set()
    for resource_type in resource_types:
        actions |= handler_permissions(resource_type)
    return sorted(actions)


def policy_documents(actions: Iterable[str], limit: int = IAM_POLICY_LIMIT) -> list[dict[str, Any]]:
    """The actions as few managed policy documents as fit IAM's size limit, whole services kept together."""
    by_service: dict[str, list[str]] = {}
    for action in sorted(actions):
        by_service.setdefault(action.split(":", 1)[0], []).append(action)
    documents: list[dict[str, Any]] = []
    current: list[str] = []

    def document(chunk: list[str]) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [{"Sid": "SageLabStudentTemplates", "Effect": "Allow", "Action": chunk, "Resource": "*"}]}

    for service_actions in by_service.values():
        candidate = current + service_actions
        if current and len(json.dumps(document(candidate), separators=(",", ":"))) > limit:
            documents.append(document(current))
            candidate = list(service_actions)
        current = candidate
    if current:
        documents.append(document(current))
    return documents


if __name__ == "__main__":
    print("\n".join(execution_actions(sys.argv[1:])))
