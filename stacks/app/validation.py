"""The Apps SageLab synthesizes, with CDK's built-in CloudFormation validation scoped to what it
has not already seen.

CDK (2.27x) validates every template of an App against its default rules (the resource providers'
schemas and CDK's Rego rules, in a WebAssembly engine) unless the App opts out. A class's students
are copies stamped from one template environment per shape of student (stacks/app/classroom.py),
which is itself synthesized, and so validated, in an App of its own; the copies differ from it only
in the student's id, email and account, which the config has checked already. Validating each of
400 copies again was 13 s of a 200-student class's synth. So every App here opts out of the
built-in instance and registers `TemplateValidation`: the same engine and rules, reporting under the
same plugin name (so CDK treats the findings exactly as its own), over every stack except the
stamped copies. See docs/decisions/0007.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jsii
from aws_cdk import (
    App,
    CloudFormationValidatePlugin,
    IPolicyValidationContext,
    IPolicyValidationPlugin,
    PolicyValidationPluginReport,
    PolicyValidationStack,
    Validations,
)
from constructs import IConstruct


@functools.cache
def _shared_engine() -> CloudFormationValidatePlugin:
    """One engine per process, as CDK keeps its own: starting one costs ~2 s."""
    return CloudFormationValidatePlugin()


@jsii.implements(IPolicyValidationContext)
class _SomeStacks:
    """A validation context narrowed to some of the app's stacks."""

    def __init__(self, app: IConstruct, stacks: Sequence[PolicyValidationStack]) -> None:
        self._app = app
        self._stacks = list(stacks)

    @property
    def app_construct(self) -> IConstruct:
        return self._app

    @property
    def stack_templates(self) -> list[PolicyValidationStack]:
        return self._stacks

    @property
    def template_paths(self) -> list[str]:
        return [stack.template_path for stack in self._stacks]

    @property
    def account_id(self) -> str | None:
        accounts = {stack.account_id for stack in self._stacks}
        return accounts.pop() if len(accounts) == 1 else None

    @property
    def region(self) -> str | None:
        regions = {stack.region for stack in self._stacks}
        return regions.pop() if len(regions) == 1 else None


@jsii.implements(IPolicyValidationPlugin)
class TemplateValidation:
    """CDK's built-in CloudFormation validation over every stack but the stamped copies."""

    @property
    def name(self) -> str:
        return CloudFormationValidatePlugin.PLUGIN_NAME

    @property
    def version(self) -> str | None:
        return _shared_engine().version

    @property
    def rule_ids(self) -> list[str] | None:
        return _shared_engine().rule_ids

    def validate(self, context: IPolicyValidationContext) -> PolicyValidationPluginReport:
        # Each read through jsii is a round trip to Node (~0.35 ms of CPU): an App without stamped
        # copies (every App but a class's main one) hands CDK's own context on untouched, and a
        # class's reads each stack's entry once (jsii reads a struct field by field). `jsii.get`
        # reads a property once: through the context's interface proxy, jsii reads it twice.
        app = jsii.get(context, "appConstruct")
        stamped = stamped_copy_ids(app)
        if not stamped:
            return _shared_engine().validate(context)
        stacks: list[PolicyValidationStack] = jsii.get(context, "stackTemplates")
        return _shared_engine().validate(_SomeStacks(app, [stack for stack in stacks if stack.stack_construct_path not in stamped]))


def stamped_copy_ids(app: IConstruct) -> set[str]:
    """Construct ids of the app's stamped copies (top-level stacks, as `stack_construct_path` names
    them), read from the Python objects classroom.py made: no round trip per stack."""
    from stacks.app.classroom import StampedStack  # classroom builds its template Apps with new_app

    return {child.stamped_name for child in app.node.children if isinstance(child, StampedStack)}


def new_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> App:
    """An App with `TemplateValidation` in place of CDK's built-in instance."""
    app = App(context=dict(context) if context is not None else None, outdir=outdir, builtin_cloud_formation_validation=False)
    Validations.of(app).add_plugins(TemplateValidation())
    return app
