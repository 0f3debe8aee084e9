"""Student ids that would take over something that is not the student's are refused at synth,
naming the roster line: an environment's name (in a shared account, student `dev` would replace
the platform team's `sagelab-dev-*` stacks) and the reserved words."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App

from sagelab.config import ConfigError, load_config
from sagelab.roster import RESERVED_STUDENT_IDS, classroom_config, parse_roster
from sagelab.settings import cdk_context
from stacks.app_builder import build_app
from stacks.classroom import TEMPLATE_STUDENT_ID

TWO_ENVIRONMENTS = {"sagelab": {"environments": {"dev": {"region": "us-east-1"}, "prod": {"region": "us-east-1"}}}}


@pytest.mark.parametrize("taken", ["dev", "prod"])
def test_a_student_named_like_an_environment_is_refused_with_its_line(taken: str) -> None:
    students = parse_roster(f"student_id,email\nalice,a@x.edu\n{taken},t@x.edu\n")
    with pytest.raises(ConfigError) as raised:
        classroom_config(load_config(TWO_ENVIRONMENTS), students)
    assert str(raised.value) == (
        f"roster.csv line 3: student id {taken!r} is the name of an environment in the config "
        f"(its stacks sagelab-{taken}-* would be replaced); choose another id"
    )


@pytest.mark.parametrize("reserved", sorted(RESERVED_STUDENT_IDS))
def test_a_reserved_student_id_is_refused_with_its_line(reserved: str) -> None:
    students = parse_roster(f"student_id,email\n{reserved},r@x.edu\n")
    with pytest.raises(ConfigError) as raised:
        classroom_config(load_config({}), students)
    assert str(raised.value) == f"roster.csv line 2: student id {reserved!r} is reserved ({RESERVED_STUDENT_IDS[reserved]}); choose another id"


def test_the_stamping_placeholder_is_reserved() -> None:
    # A student whose id were the placeholder would be indistinguishable from the template itself.
    assert TEMPLATE_STUDENT_ID in RESERVED_STUDENT_IDS


def test_a_shared_account_id_within_an_environments_prefix_is_refused_with_its_line() -> None:
    # `dev`'s roles are scoped to `sagelab-dev-*`, which names every job of a student `dev-2` too.
    students = parse_roster("student_id,email\ndevon,e@x.edu\ndev-2,d@x.edu\n")
    with pytest.raises(ConfigError) as raised:
        classroom_config(load_config(TWO_ENVIRONMENTS), students)
    assert str(raised.value) == (
        "roster.csv line 3: student id 'dev-2' starts with the prefix of environment 'dev' ('sagelab-dev-'), whose roles would reach "
        "its jobs and logs in a shared account: rename it or give it its own account"
    )


def test_ids_that_only_look_alike_or_have_their_own_account_are_fine() -> None:
    # Stacks are addressed by exact name (make deploy/destroy, the README), and `devon`'s names do
    # not start with `sagelab-dev-`; a student in an account of their own shares no names.
    students = parse_roster("student_id,email,account_id\ndev-2,d@x.edu,123456789012\ndevon,e@x.edu,\n")
    config = classroom_config(load_config(TWO_ENVIRONMENTS), students)
    assert [env.name for env in config.environments] == ["dev-2", "devon"]


def test_synth_fails_on_a_colliding_roster_naming_the_line(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,email\nalice,a@x.edu\ndev,d@x.edu\n")
    app = App(context={**cdk_context(), "roster": str(roster)}, outdir=str(tmp_path / "cdk.out"))
    with pytest.raises(ConfigError, match=rf"^{roster} line 3: student id 'dev' is the name of an environment"):
        build_app(app)
