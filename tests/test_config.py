"""Config: defaults, merging, and one-line errors that name the source, line, field and value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sagelab.config import ConfigError, EnvironmentConfig, load_config
from sagelab.settings import cdk_context

REPO_ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_give_one_dev_environment_without_an_account() -> None:
    config = load_config({})
    assert [e.name for e in config.environments] == ["dev"]
    env = config.environments[0]
    assert env.account is None and env.region == "us-east-1"
    assert env.removal_policy == "retain"
    assert env == EnvironmentConfig()


def test_cdk_json_context_is_the_checked_in_default() -> None:
    config = load_config(cdk_context())
    assert config.environments[0].owner == "platform-team"


def test_file_overrides_context_key_by_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
defaults:
  owner: ml-team
environments:
  dev:
    notebook:
      instance_type: ml.t3.large
  prod:
    account: "123456789012"
    region: eu-west-1
    serving: {mode: serverless}
""",
    )
    config = load_config(cdk_context(), path)
    dev, prod = config.environments
    assert dev.owner == prod.owner == "ml-team"
    assert dev.notebook.instance_type == "ml.t3.large" and dev.notebook.volume_size_gb == 10
    assert prod.account == "123456789012" and prod.region == "eu-west-1" and prod.serving.mode == "serverless"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("environments:\n  dev:\n    regoin: us-east-1\n", "line 3: environments.dev.regoin: unknown key (allowed: name, account, region"),
        (
            "environments:\n  dev:\n    notebook:\n      volume_size_gb: ten\n",
            "line 4: environments.dev.notebook.volume_size_gb: 'ten' is not valid (expected an integer)",
        ),
        (
            "environments:\n  dev:\n    region: us-east-9x\n",
            "line 3: environments.dev.region: 'us-east-9x' is not valid (expected an AWS region like us-east-1)",
        ),
        (
            "environments:\n  dev:\n    account: '1234'\n",
            "line 3: environments.dev.account: '1234' is not valid (expected a 12-digit AWS account id, or unset)",
        ),
        (
            "environments:\n  dev:\n    removal_policy: delete\n",
            "line 3: environments.dev.removal_policy: 'delete' is not valid (expected one of 'retain', 'destroy')",
        ),
        (
            "environments:\n  dev:\n    serving:\n      mode: gpu\n",
            "line 4: environments.dev.serving.mode: 'gpu' is not valid (expected one of 'realtime', 'serverless')",
        ),
        ("projekt: x\n", "line 1: projekt: unknown key (allowed: classroom, defaults, environments, quotas)"),
        ("classroom:\n  budget_usd: 0\n", "line 2: classroom.budget_usd: 0 is not valid (expected 1..100000 USD per student per month)"),
        ("classroom:\n  admin_emails: [nope]\n", "classroom.admin_emails[0]: 'nope' is not valid (expected an email address)"),
        ("environments:\n  Dev_1: {}\n", "environments.Dev_1.name: 'Dev_1' is not valid (expected lowercase letters"),
        ("environments: [dev]\n", "environments: ['dev'] is not valid (expected a mapping of environment name"),
        (
            "environments:\n  dev:\n    pipeline:\n      metric_threshold: 1.5\n",
            "line 4: environments.dev.pipeline.metric_threshold: 1.5 is not valid (expected 0..1 for the score 'accuracy')",
        ),
        ("environments:\n  dev: {\n", "not valid YAML"),
        # strict: no coercion from YAML strings or booleans to numbers, nor numbers to booleans
        ("environments:\n  dev:\n    notebook: {volume_size_gb: '10'}\n", "environments.dev.notebook.volume_size_gb: '10' is not valid (expected an integer)"),
        (
            "environments:\n  dev:\n    notebook: {direct_internet_access: 1}\n",
            "environments.dev.notebook.direct_internet_access: 1 is not valid (expected true or false)",
        ),
        ("environments:\n  dev:\n    pipeline: {max_depth: true}\n", "environments.dev.pipeline.max_depth: True is not valid (expected an integer)"),
        (
            "environments:\n  dev:\n    allowed_instance_types: [m5.large]\n",
            "allowed_instance_types[0]: 'm5.large' is not valid (expected an ML instance type like ml.m5.large)",
        ),
        (
            "environments:\n  dev:\n    pipeline: {tuning: {eta_min: 0.5, eta_max: 0.2}}\n",
            "pipeline.tuning.eta_max: 0.2 is not valid (expected greater than eta_min (0.5), at most 1)",
        ),
        ("defaults:\n  serving: {quota_per_day: 0}\n", "line 2: defaults.serving.quota_per_day: 0 is not valid (expected at least 1)"),
        ("environments:\n  dev:\n    notebook: 5\n", "environments.dev.notebook: 5 is not valid (expected a mapping of instance_type, volume_size_gb"),
    ],
)
def test_bad_config_fails_with_one_line_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config({}, path)
    message = str(raised.value)
    assert "\n" not in message
    assert expected in message, message
    assert str(path) in message


def test_missing_config_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"config=/nonexistent\.yaml: file not found"):
        load_config({}, "/nonexistent.yaml")


def test_synth_fails_on_bad_config_with_one_line(tmp_path: Path) -> None:
    """The real app, as `cdk synth -c config=FILE` runs it (the CLI passes context by env)."""
    path = write(tmp_path, "environments:\n  dev:\n    region: moon-base-1\n")
    context = {**cdk_context(), "config": str(path)}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path / "out")}
    completed = subprocess.run([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("sagelab config error")]
    assert error_lines == [f"sagelab config error: {path} line 3: environments.dev.region: 'moon-base-1' is not valid (expected an AWS region like us-east-1)"]


def test_the_cli_finds_resources_by_the_names_the_stacks_give_them_without_importing_cdk(platform_template: dict[str, Any]) -> None:
    from sagelab.naming import ResourceNames

    names = ResourceNames.of("dev")
    pipeline = next(r for r in platform_template["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline")
    group = next(r for r in platform_template["Resources"].values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup")
    assert (pipeline["Properties"]["PipelineName"], group["Properties"]["ModelPackageGroupName"]) == (names.pipeline, names.model_package_group)
    probe = "import sys, sagelab.cli, sagelab.aws_ops, sagelab.lab, sagelab.naming, sagelab.config; print(sorted(m for m in sys.modules if m.startswith('aws_cdk')))"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert completed.stdout.strip() == "[]", completed.stderr


def test_a_changed_config_is_validated_like_a_loaded_one() -> None:
    """`dataclasses.replace` on the frozen config runs the same validation (the roster relies on it)."""
    import dataclasses

    from sagelab.config import replace_checked

    env = EnvironmentConfig()
    with pytest.raises(ConfigError) as raised:
        replace_checked(env, "roster.csv line 3", "student bob", owner="o'brien")
    assert str(raised.value) == 'roster.csv line 3: student bob.owner: "o\'brien" is not valid (expected 1-128 characters valid in an AWS tag value)'
    assert dataclasses.replace(env, owner="team").owner == "team"
    assert hash(dataclasses.replace(env.pipeline)) == hash(env.pipeline), "equal pipeline configs share one built definition"


# -- pipeline.custom_script: a path relative to the source that sets it ----------------------------
def test_custom_script_is_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "my_train.py").write_text("print('training')\n")
    path = write(tmp_path, "environments:\n  dev:\n    pipeline:\n      custom_script: scripts/my_train.py\n      algorithm: custom\n")
    (env,) = load_config({}, path).environments
    assert env.pipeline.custom_script == str(tmp_path / "scripts" / "my_train.py")
    assert env.pipeline.custom_script_bundle_path == "custom/my_train.py"
    assert EnvironmentConfig().pipeline.custom_script_bundle_path is None


def test_custom_script_in_cdk_json_is_relative_to_the_project_folder(tmp_path: Path) -> None:
    from sagelab.settings import load_project_config

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"sagelab": {"defaults": {"pipeline": {"custom_script": "train_mine.py"}}}}}))
    (tmp_path / "train_mine.py").write_text("")
    (env,) = load_project_config(cdk_json=tmp_path / "cdk.json").environments
    assert env.pipeline.custom_script == str(tmp_path / "train_mine.py")
    context = {"sagelab": {"defaults": {"pipeline": {"custom_script": "train_mine.py"}}}}
    assert load_config(context, project_dir=tmp_path).environments[0].pipeline.custom_script == str(tmp_path / "train_mine.py")
    assert context == {"sagelab": {"defaults": {"pipeline": {"custom_script": "train_mine.py"}}}}, "the caller's context is not rewritten"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "environments:\n  dev:\n    pipeline:\n      custom_script: nowhere/train.py\n",
            "line 4: environments.dev.pipeline.custom_script: 'nowhere/train.py' is not valid (expected a .py file, relative to the config file's folder ({dir}); {dir}/nowhere/train.py does not exist)",
        ),
        (
            "defaults:\n  pipeline:\n    custom_script: notes.txt\n",
            "line 3: defaults.pipeline.custom_script: 'notes.txt' is not valid (expected a .py file, relative to the config file's folder ({dir}); {dir}/notes.txt is not a .py file)",
        ),
        (
            "environments:\n  dev:\n    pipeline:\n      algorithm: custom\n",
            "line 4: environments.dev.pipeline.algorithm: 'custom' is not valid (expected xgboost, kmeans or autopilot, or set pipeline.custom_script",
        ),
        (
            "environments:\n  dev:\n    pipeline:\n      custom_script: 7\n",
            "line 4: environments.dev.pipeline.custom_script: 7 is not valid (expected a string or null)",
        ),
        (
            "environments:\n  dev:\n    pipeline: {custom_script: a/train.py}\n  prod:\n    pipeline: {custom_script: b/train.py}\n",
            "environments.prod.pipeline.custom_script: '{dir}/b/train.py' is not valid (expected a file name other than environment dev's {dir}/a/train.py (both would be custom/train.py in the one code bundle))",
        ),
    ],
)
def test_bad_custom_script_fails_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "notes.txt").write_text("not python\n")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.py").write_text("")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config({}, path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(path))
    assert expected.format(dir=tmp_path) in message, message


def test_synth_fails_on_a_missing_custom_script_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """app.py's synth in this process, from the project folder as the CDK CLI runs it: the
    ConfigError it raises is the line app.py prints before it exits with status 1, which
    test_synth_fails_on_bad_config_with_one_line proves on a real process (a second process
    proved nothing more, for 3 s of CPU)."""
    from stacks.app.builder import build_app
    from stacks.app.validation import new_app

    monkeypatch.chdir(REPO_ROOT)
    context = {**cdk_context(), "sagelab": {"environments": {"dev": {"pipeline": {"custom_script": "examples/no_such_script.py"}}}}}
    with pytest.raises(ConfigError) as raised:
        build_app(new_app(context, str(tmp_path / "out")))
    assert str(raised.value) == (
        "cdk.json context 'sagelab': environments.dev.pipeline.custom_script: 'examples/no_such_script.py' is not valid "
        f"(expected a .py file, relative to the project folder ({REPO_ROOT}); {REPO_ROOT}/examples/no_such_script.py does not exist)"
    )
