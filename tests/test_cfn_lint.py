"""cfn-lint over every synthesized template: zero errors."""

from __future__ import annotations

import functools
import json

from cfnlint.api import ManualArgs
from cfnlint.config import ConfigMixIn
from cfnlint.decode.decode import decode_str
from cfnlint.runner import Runner

from tests.conftest import SynthResult


@functools.cache
def _runner(region: str) -> Runner:
    """One runner per region, as the cfn-lint CLI keeps one for all the templates it is given:
    loading its rules was a third of each template's lint (`cfnlint.api.lint` makes a new one)."""
    return Runner(ConfigMixIn(**ManualArgs(regions=[region])))


def lint_errors(template: dict, region: str = "us-east-1") -> list[str]:
    decoded, decode_errors = decode_str(json.dumps(template))  # cfnlint.api.lint's own first step
    matches = decode_errors or (list(_runner(region).validate_template(decoded)) if decoded is not None else [])
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]


def test_every_template_has_no_cfn_lint_errors(synthesized: SynthResult) -> None:
    assert synthesized.templates
    for name, template in synthesized.templates.items():
        assert lint_errors(template) == [], name


def test_the_linter_does_report_errors() -> None:
    broken = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"VersioningConfiguration": {"Status": "Sometimes"}}}}}
    assert any(line.startswith("E") for line in lint_errors(broken))
