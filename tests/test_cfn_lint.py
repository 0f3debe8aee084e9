"""cfn-lint over every synthesized template: zero errors."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

from tests.conftest import SynthResult

if TYPE_CHECKING:
    from cfnlint.config import ConfigMixIn
    from cfnlint.rules import Rules

# cfn-lint is imported where it is used, not with this module: the five test modules that import
# lint_errors are imported by every xdist worker and by every run of one of them, and importing
# cfn-lint (sympy, networkx) costs 1.2 s of CPU whether or not a selected test lints.


@functools.cache
def _config(region: str) -> ConfigMixIn:
    from cfnlint.api import ManualArgs
    from cfnlint.config import ConfigMixIn

    return ConfigMixIn(**ManualArgs(regions=[region]))


@functools.cache
def _rules() -> Rules:
    """Every cfn-lint rule, loaded once per process for every region, as the cfn-lint CLI loads them
    once for all the templates and regions it is given. (Loading them was a third of each template's
    lint when `cfnlint.api.lint` made a new Runner per call, and 0.6 s of CPU for each region's.)"""
    from cfnlint.runner import Runner

    return Runner(_config("us-east-1")).rules  # the rules do not depend on the region; each run gets its config


@functools.cache
def _errors(text: str, region: str) -> tuple[str, ...]:
    """The errors cfn-lint finds in this exact template text in `region`. Cached for the process (one
    test run's worker) only: tests that lint the same template again (test_stamping.py's two
    class-account cases share an own-account student's serving stack) are not linted twice."""
    from cfnlint.decode.decode import decode_str
    from cfnlint.runner import run_template_by_data  # what Runner.validate_template runs

    decoded, decode_errors = decode_str(text)  # cfnlint.api.lint's own first step
    matches = decode_errors or (list(run_template_by_data(decoded, _config(region), _rules())) if decoded is not None else [])
    return tuple(f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E"))


def lint_errors(template: dict, region: str = "us-east-1") -> list[str]:
    return list(_errors(json.dumps(template), region))


def test_every_template_has_no_cfn_lint_errors(synthesized: SynthResult) -> None:
    assert synthesized.templates
    for name, template in synthesized.templates.items():
        assert lint_errors(template) == [], name


def test_the_linter_does_report_errors() -> None:
    broken = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"VersioningConfiguration": {"Status": "Sometimes"}}}}}
    assert any(line.startswith("E") for line in lint_errors(broken))


def test_a_template_is_linted_once_per_run_for_its_exact_content_and_region() -> None:
    def bucket(status: str) -> dict:
        return {"Resources": {"OnceBucket": {"Type": "AWS::S3::Bucket", "Properties": {"VersioningConfiguration": {"Status": status}}}}}

    before = _errors.cache_info()
    assert lint_errors(bucket("Enabled")) == []
    # The same content in another object: the errors found before, without linting again.
    assert lint_errors(json.loads(json.dumps(bucket("Enabled")))) == []
    assert _errors.cache_info().hits == before.hits + 1 and _errors.cache_info().misses == before.misses + 1
    # One value changed: linted, and its error found.
    assert any(line.startswith("E3030 ") for line in lint_errors(bucket("Sometimes")))
    # The same template in another region: linted there. (AWS::Bedrock::Session is in cfn-lint's
    # us-east-1 registry schemas and not in eu-west-1's; pick another such type if that changes.)
    session = {"Resources": {"Session": {"Type": "AWS::Bedrock::Session"}}}
    assert lint_errors(session, "us-east-1") == []
    assert [line.split(" ", 1)[0] for line in lint_errors(session, "eu-west-1")] == ["E3006"]
