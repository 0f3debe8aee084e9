"""`promote_from`: a release chain in the config, and the one-line errors that name its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagelab.config import ConfigError, load_config, release_chain
from sagelab.release import stages_of
from tests.conftest import THREE_ACCOUNTS


def test_a_three_account_chain_in_release_order(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(THREE_ACCOUNTS)
    config = load_config({}, path)
    dev = config.environments[0]
    assert [env.name for env in release_chain(config.environments, dev)] == ["dev", "staging", "prod"]
    # `sagelab release --config`: the same stages locally, an approval before every stage after the first.
    stages = stages_of(release_chain(config.environments, dev))
    assert [(stage.name, stage.needs_approval) for stage in stages] == [("staging", False), ("prod", True)]
    prod = config.environments[2]
    assert prod.release.approvers == ("arn:aws:iam::111111111111:role/release-approver",) and prod.release.tolerance == 0.02


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'environments:\n  dev: {account: "111111111111"}\n  staging:\n    account: "222222222222"\n    promote_from: qa\n',
            "line 5: environments.staging.promote_from: 'qa' is not valid (expected the name of another environment of this config (dev))",
        ),
        (
            'environments:\n  dev: {account: "111111111111", promote_from: dev}\n',
            "line 2: environments.dev.promote_from: 'dev' is not valid (expected the name of another environment of this config (none))",
        ),
        (
            'environments:\n  a: {account: "111111111111", promote_from: b}\n  b: {account: "222222222222", promote_from: a}\n',
            "line 2: environments.a.promote_from: 'b' is not valid (expected no cycle (a -> b -> a); one environment must train)",
        ),
        (
            'environments:\n  dev: {account: "111111111111"}\n  staging:\n    account: "222222222222"\n    region: eu-west-1\n    promote_from: dev\n',
            "line 5: environments.staging.region: 'eu-west-1' is not valid (expected us-east-1, the region of dev it promotes from (crossing regions",
        ),
        (
            'environments:\n  dev: {}\n  staging:\n    account: "222222222222"\n    promote_from: dev\n',
            "line 2: environments.dev.account: None is not valid (expected a 12-digit account id on both sides of promote_from (no students))",
        ),
        (
            'environments:\n  dev: {account: "111111111111"}\n  a: {account: "222222222222", promote_from: dev}\n'
            '  b: {account: "333333333333", promote_from: dev}\n',
            "line 4: environments.b.promote_from: 'dev' is not valid (expected an environment no other promotes from (a already does))",
        ),
        (
            'environments:\n  dev: {account: "111111111111"}\n  staging:\n    account: "222222222222"\n    promote_from: dev\n    serving: {auth: iam}\n',
            "line 6: environments.staging.serving.auth: 'iam' is not valid (expected api_key in a promoting environment",
        ),
        (
            "environments:\n  dev:\n    release: {tolerance: 2}\n",
            "line 3: environments.dev.release.tolerance: 2 is not valid (expected 0..1)",
        ),
    ],
)
def test_a_bad_chain_fails_with_the_line_at_fault(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config({}, path)
    assert str(error.value).startswith(f"{path} {expected}"), str(error.value)
