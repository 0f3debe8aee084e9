"""Student ids that would take over something that is not the student's are refused at synth,
naming the roster line: an environment's name (in a shared account, student `dev` would replace
the platform team's `sagelab-dev--*` stacks) and the reserved words. Ids that merely extend one
another (`ana` and `ana-2`, `dev-kowal` beside the environment `dev`) are accepted: every name is
`sagelab-<id>--<suffix>` and ids cannot contain `--` (sagelab/naming.py; the isolation proof is
tests/test_least_privilege.py over the `tenants` fixture)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagelab.config import ConfigError, load_config
from sagelab.naming import ENVIRONMENT_ID, MAX_ID_LENGTH, STUDENT_ID, ResourceNames, is_student_id
from sagelab.roster import RESERVED_STUDENT_IDS, classroom_config, parse_roster
from sagelab.settings import cdk_context
from stacks.app.builder import build_app
from stacks.app.classroom import TEMPLATE_STUDENT_ID
from stacks.app.validation import new_app
from tests.iam_policy import resource_matches

TWO_ENVIRONMENTS = {"sagelab": {"environments": {"dev": {"region": "us-east-1"}, "prod": {"region": "us-east-1"}}}}


@pytest.mark.parametrize("taken", ["dev", "prod"])
def test_a_student_named_like_an_environment_is_refused_with_its_line(taken: str) -> None:
    students = parse_roster(f"student_id,email\nalice,a@x.edu\n{taken},t@x.edu\n")
    with pytest.raises(ConfigError) as raised:
        classroom_config(load_config(TWO_ENVIRONMENTS), students)
    assert str(raised.value) == (
        f"roster.csv line 3: student id {taken!r} is the name of an environment in the config "
        f"(its stacks sagelab-{taken}--* would be replaced); choose another id"
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


def test_an_environment_may_not_take_the_class_id(tmp_path: Path) -> None:
    # `sagelab-class--*` names a classroom's shared web ACL and dashboard.
    config = tmp_path / "config.yaml"
    config.write_text("environments:\n  dev: {}\n  class: {}\n")
    with pytest.raises(ConfigError, match=rf"^{config} line 3: environments.class: 'class' is not valid \(expected another name"):
        load_config({}, config)


@pytest.mark.parametrize(
    ("student_id", "line"),
    [("ana--2", 3), ("ana-", 3), ("-ana", 3), ("a" * 21, 3)],
)
def test_ids_that_could_contain_the_separator_are_refused_with_their_line(student_id: str, line: int) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_roster(f"student_id,email\nana,a@x.edu\n{student_id},b@x.edu\n")
    assert str(raised.value) == (
        f"roster.csv line {line}: student id {student_id!r} is not valid "
        "(expected lowercase letters, digits and single hyphens (not `--`), ending with a letter or digit, at most 20 characters)"
    )


@pytest.mark.parametrize("name", ["ml--prod", "ml-"])
def test_environment_names_that_could_contain_the_separator_are_refused_with_their_line(tmp_path: Path, name: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"environments:\n  dev: {{}}\n  {name}: {{}}\n")
    with pytest.raises(ConfigError, match=rf"^{config} line 3: environments.{name}.name: '{name}' is not valid \(expected lowercase letters, digits"):
        load_config({}, config)


def test_ids_that_extend_one_another_share_an_account() -> None:
    # Refused before the `--` scheme (`sagelab-dev-*` named `dev-kowal`'s jobs, `sagelab-ana-*` ana-2's).
    config = load_config({"sagelab": {"environments": {"dev": {}, "ml-prod": {}}}})
    students = parse_roster("student_id,email\nana,a@x.edu\nana-2,a2@x.edu\ndev-kowal,k@x.edu\nml,m@x.edu\n")
    assert [env.name for env in classroom_config(config, students).environments] == ["ana", "ana-2", "dev-kowal", "ml"]


def test_synth_fails_on_a_colliding_roster_naming_the_line(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,email\nalice,a@x.edu\ndev,d@x.edu\n")
    app = new_app({**cdk_context(), "roster": str(roster)}, str(tmp_path / "cdk.out"))
    with pytest.raises(ConfigError, match=rf"^{roster} line 3: student id 'dev' is the name of an environment"):
        build_app(app)


# -- the scheme, on paper and by search -------------------------------------------------------------
# Claim: for ids A != B (each matching ENVIRONMENT_ID or STUDENT_ID), the IAM pattern
# `sagelab-A--*` matches no name `sagelab-B--<suffix>`. `*` matches any characters (`/` and `:`
# too), so the pattern matches exactly the strings that start with `sagelab-A--`. Suppose
# `sagelab-B--s` starts with `sagelab-A--`: then `B--s` starts with `A--`. If len(B) = len(A), B = A.
# If B is shorter, A starts with B followed by `--`: A contains `--` or, with one character left,
# ends with `-`; if B is longer, the same holds for B. Each is excluded by the id patterns.
ids = st.one_of(st.from_regex(ENVIRONMENT_ID, fullmatch=True), st.from_regex(STUDENT_ID, fullmatch=True)).filter(lambda s: len(s) <= MAX_ID_LENGTH)
# Adversarial ids: built from the characters that matter, so that prefixes and extensions are common.
near_ids = st.text(alphabet="ab-", min_size=1, max_size=6).filter(is_student_id)
suffixes = st.text(alphabet=st.sampled_from("abp-/:.*?0"), max_size=12)


@st.composite
def id_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two ids, often one extending the other (`ml`, `ml-prod`) in either order."""
    a = draw(st.one_of(ids, near_ids))
    how = draw(st.sampled_from(["independent", "extends", "extended"]))
    if how == "independent":
        return a, draw(st.one_of(ids, near_ids))
    longer = f"{a}-{draw(near_ids)}"[:MAX_ID_LENGTH].rstrip("-")
    return (a, longer) if how == "extends" else (longer, a)


@given(pair=id_pairs(), suffix=suffixes)
def test_no_scope_matches_another_ids_names(pair: tuple[str, str], suffix: str) -> None:
    a, b = pair
    names_a, names_b = ResourceNames.of(a), ResourceNames.of(b)
    if a != b:
        assert not resource_matches(names_a.pattern(), names_b.name(suffix))
        assert not resource_matches(names_a.pattern(), names_b.name(suffix) + "/algo-1-1700000000")  # a job's log stream
    else:
        assert resource_matches(names_a.pattern(), names_b.name(suffix))


def test_the_old_scope_matches_a_neighbours_names() -> None:
    """The planted negative case for the search above: with the scope `sagelab-<id>-*` of the old
    scheme, `ml`'s scope matches `ml-prod`'s jobs and `ana`'s matches `ana-2`'s."""
    for own, other in (("ml", "ml-prod"), ("ana", "ana-2"), ("dev", "dev-kowal")):
        assert resource_matches(f"sagelab-{own}-*", ResourceNames.of(other).name("train-a1b2c3"))
        assert not resource_matches(ResourceNames.of(own).pattern(), ResourceNames.of(other).name("train-a1b2c3"))


@pytest.mark.parametrize("longest", ["a" * 20, "a-b-c-d-e-f-g-h-i-j1"])
def test_the_longest_ids_names_are_valid_sagemaker_names(longest: str) -> None:
    """`--` inside a name is valid wherever SageMaker takes our names (botocore's patterns and
    lengths); the one-letter AutoML and tuning prefixes leave one character of the 32."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    names = ResourceNames.of(longest)
    assert is_student_id(longest) and not is_student_id(longest + "x")
    given = {
        "PipelineName": names.pipeline,
        "EntityName": names.model_package_group,
        "EndpointName": names.endpoint,
        "NotebookInstanceName": names.notebook,
        "ProcessingJobName": names.name("kmeans-evaluate") + "-a1b2c3d4e5",
        "TrainingJobName": names.name("train") + "-a1b2c3d4e5",
        "TransformJobName": names.batch_job("20260101-120000-123456"),
        "ModelName": names.name("autopilot-model") + "-a1b2c3d4e5",
        "AutoMLJobName": names.name("a"),
        "HyperParameterTuningJobName": names.name("t"),
    }
    for shape_name, name in given.items():
        shape = model.shape_for(shape_name)
        assert re.fullmatch(shape.metadata["pattern"], name) and len(name) <= shape.metadata["max"], (shape_name, name)
    assert len(names.name("a")) == 31
