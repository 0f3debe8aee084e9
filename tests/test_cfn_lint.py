"""cfn-lint over every synthesized template: zero errors."""

from __future__ import annotations

import json

from cfnlint.api import ManualArgs, lint

from tests.conftest import SynthResult


def lint_errors(template: dict, region: str = "us-east-1") -> list[str]:
    matches = lint(json.dumps(template), config=ManualArgs(regions=[region]))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]


def test_every_template_has_no_cfn_lint_errors(synthesized: SynthResult) -> None:
    assert synthesized.templates
    for name, template in synthesized.templates.items():
        assert lint_errors(template) == [], name


def test_the_linter_does_report_errors() -> None:
    broken = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"VersioningConfiguration": {"Status": "Sometimes"}}}}}
    assert any(line.startswith("E") for line in lint_errors(broken))
