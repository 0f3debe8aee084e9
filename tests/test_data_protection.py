"""Data protection, proved on the synthesized templates: captured requests are sampled as
configured and expire; SageMaker's log groups exist before SageMaker creates them, encrypted with
the environment's key and with a retention period; the model runs with network isolation and its
artifact carries the code that serves it; the key lets CloudWatch Logs use it for this
environment's log groups only (ArnLike semantics over the resolved condition); the access-log
bucket outlives the stack even when the environment opted into DESTROY.

Two syntheses: the default app (session fixture) and, once per module, an app with two
environments in one account: `dev` (owns the account-wide log groups, DESTROY, 25 % capture kept
7 days) and `nocap` (capture off), so that each environment's key is checked against the other's
real log groups.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeline_steps import model_contract, preprocess, train
from sagelab.config import EnvironmentConfig, SageLabConfig
from sagelab.datasets import DIGITS_CSV
from sagelab.pipeline_definition import MODEL_CODE_DIR
from sagelab.roster import Student, classroom_config
from stacks.sagemaker_log_groups.construct import ACCOUNT_WIDE_LOG_GROUPS
from tests.conftest import SynthResult, synth
from tests.test_cfn_lint import lint_errors

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/sagelab-dev--serving/1a2b3c4d-0000-1111-2222-333344445555",
}
TWO_ENVIRONMENTS = """\
environments:
  dev:
    account_log_groups: true
    removal_policy: destroy
    serving: {data_capture_percent: 25, data_capture_expiry_days: 7}
  nocap:
    serving: {data_capture_percent: 0}
"""


@pytest.fixture(scope="module")
def two_environments(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    directory = tmp_path_factory.mktemp("two-environments")
    config = directory / "two.yaml"
    config.write_text(TWO_ENVIRONMENTS)
    return synth(directory / "cdk.out", {"config": str(config)})  # cdk-nag runs: a finding raises


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def resolve(value: Any, imports: dict[str, Any] | None = None) -> Any:
    """A CloudFormation value with pseudo parameters and cross-stack imports resolved; a Ref or
    GetAtt to a resource stays a marker naming it."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve(item, imports) for item in value]
    if isinstance(value, dict):
        if "Ref" in value:
            return PSEUDO.get(value["Ref"], f"<{value['Ref']}>")
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(resolve(part, imports) for part in parts)
        if "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return resolve(text, imports).split(separator)
        if "Fn::Select" in value:
            index, items = value["Fn::Select"]
            return resolve(items, imports)[int(index)]
        if "Fn::ImportValue" in value and imports is not None:
            return resolve(imports[resolve(value["Fn::ImportValue"])], imports)
    raise AssertionError(f"cannot resolve {value!r}")


def exports_of(result: SynthResult) -> dict[str, Any]:
    return {o["Export"]["Name"]: o["Value"] for t in result.templates.values() for o in t.get("Outputs", {}).values() if "Export" in o}


def arn_like(pattern: str, value: str) -> bool:
    """IAM's ArnLike: each of the six colon-separated parts matched on its own, `*` any run of
    characters (including `/`), `?` one character."""
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(
        re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p), v) is not None
        for p, v in zip(pattern_parts, value_parts, strict=True)
    )


def log_group_arn(name: str) -> str:
    return f"arn:aws:logs:us-east-1:123456789012:log-group:{name}"


def encrypted_log_groups(result: SynthResult, env: str) -> dict[str, dict[str, Any]]:
    """Every KMS-encrypted log group of an environment, by the name it will have: its own, or
    CloudFormation's generated `<stack>-<logical id>-<suffix>`."""
    groups = {}
    for stack in (f"sagelab-{env}--platform", f"sagelab-{env}--serving"):
        for logical_id, group in of_type(result.template(stack), "AWS::Logs::LogGroup").items():
            properties = group["Properties"]
            name = resolve(properties["LogGroupName"]) if "LogGroupName" in properties else f"{stack}-{logical_id}-1A2B3C4D5E6F"
            groups[name] = group
    return groups


def logs_key_statement(result: SynthResult, env: str) -> dict[str, Any]:
    (key,) = of_type(result.template(f"sagelab-{env}--platform"), "AWS::KMS::Key").values()
    (statement,) = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if "logs." in str(resolve(s.get("Principal", {}).get("Service", ""))) and s["Effect"] == "Allow"
    ]
    return statement


def logs_may_use_key_for(statement: dict[str, Any], group_name: str) -> bool:
    patterns = resolve(statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    return any(arn_like(pattern, log_group_arn(group_name)) for pattern in ([patterns] if isinstance(patterns, str) else patterns))


# -- data capture --------------------------------------------------------------------------------
def endpoint_config(result: SynthResult, env: str) -> dict[str, Any]:
    (config,) = of_type(result.template(f"sagelab-{env}--serving"), "AWS::SageMaker::EndpointConfig").values()
    return dict(config["Properties"])


def test_data_capture_samples_the_configured_share_and_zero_turns_it_off(synthesized: SynthResult, two_environments: SynthResult) -> None:
    default = endpoint_config(synthesized, "dev")["DataCaptureConfig"]
    assert default["EnableCapture"] is True and default["InitialSamplingPercentage"] == EnvironmentConfig().serving.data_capture_percent == 10
    assert endpoint_config(two_environments, "dev")["DataCaptureConfig"]["InitialSamplingPercentage"] == 25
    assert endpoint_config(two_environments, "nocap").get("DataCaptureConfig", {}).get("EnableCapture", False) is False


@pytest.mark.parametrize(("app", "days"), [("synthesized", 30), ("two_environments", 7)], ids=["default-30-days", "configured-7-days"])
def test_captured_requests_expire_from_the_bucket_they_are_written_to(request: pytest.FixtureRequest, app: str, days: int) -> None:
    result: SynthResult = request.getfixturevalue(app)
    capture = endpoint_config(result, "dev")["DataCaptureConfig"]
    destination = resolve(capture["DestinationS3Uri"], exports_of(result))
    bucket_marker, _, path = destination.removeprefix("s3://").partition("/")
    platform = result.template("sagelab-dev--platform")
    (artifacts_id,) = [k for k in of_type(platform, "AWS::S3::Bucket") if k.startswith("StorageArtifacts")]
    assert bucket_marker == f"<{artifacts_id}>", "capture goes to this environment's artifacts bucket"
    rules = platform["Resources"][artifacts_id]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if r["Status"] == "Enabled" and f"{path}/".startswith(r.get("Prefix", "")) and r.get("ExpirationInDays") is not None]
    assert [r["ExpirationInDays"] for r in expiring] == [days]
    assert expiring[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 1, "the bucket is versioned: expired captures must not linger as old versions"


def test_data_capture_expiry_is_validated() -> None:
    from sagelab.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"environments\.dev\.serving\.data_capture_expiry_days: 0 is not valid \(expected 1\.\.3650\)"):
        load_config({"sagelab": {"environments": {"dev": {"serving": {"data_capture_expiry_days": 0}}}}})


# -- SageMaker's log groups ------------------------------------------------------------------------
def test_endpoint_log_group_is_ours_encrypted_with_retention_before_the_endpoint(synthesized: SynthResult) -> None:
    serving = synthesized.template("sagelab-dev--serving")
    groups = {resolve(g["Properties"].get("LogGroupName", "")): (k, g) for k, g in of_type(serving, "AWS::Logs::LogGroup").items()}
    logical_id, group = groups["/aws/sagemaker/Endpoints/sagelab-dev--endpoint"]
    assert group["Properties"]["RetentionInDays"] == 30
    key_arn = resolve(group["Properties"]["KmsKeyId"], exports_of(synthesized))
    (key_id,) = of_type(synthesized.template("sagelab-dev--platform"), "AWS::KMS::Key")
    assert key_arn == f"<{key_id}.Arn>"
    (endpoint,) = of_type(serving, "AWS::SageMaker::Endpoint").values()
    assert logical_id in endpoint["DependsOn"], "SageMaker would otherwise create the group first, unencrypted and kept forever"


def test_account_wide_groups_only_where_asked(synthesized: SynthResult, two_environments: SynthResult) -> None:
    def names(result: SynthResult, env: str) -> set[str]:
        return set(encrypted_log_groups(result, env))

    assert not names(synthesized, "dev") & set(ACCOUNT_WIDE_LOG_GROUPS), "off by default: another environment may own them"
    assert set(ACCOUNT_WIDE_LOG_GROUPS) <= names(two_environments, "dev")
    assert not names(two_environments, "nocap") & set(ACCOUNT_WIDE_LOG_GROUPS), "one owner per account: no collision"
    platform = two_environments.template("sagelab-dev--platform")
    (key_id,) = of_type(platform, "AWS::KMS::Key")
    for name in ACCOUNT_WIDE_LOG_GROUPS:
        group = encrypted_log_groups(two_environments, "dev")[name]
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]} and group["Properties"]["RetentionInDays"] == 30


def test_students_never_own_the_account_wide_groups() -> None:
    base = SageLabConfig(environments=(dataclasses.replace(EnvironmentConfig(), account_log_groups=True),))
    students = [Student(student_id=s, email=f"{s}@example.edu", account_id=None, region=None, line=i) for i, s in enumerate(("alice", "bob"), 2)]
    assert [env.account_log_groups for env in classroom_config(base, students).environments] == [False, False]


def test_key_lets_cloudwatch_logs_use_it_for_this_environments_groups_only(two_environments: SynthResult) -> None:
    groups = {env: encrypted_log_groups(two_environments, env) for env in ("dev", "nocap")}
    for env, other in (("dev", "nocap"), ("nocap", "dev")):
        statement = logs_key_statement(two_environments, env)
        assert resolve(statement["Principal"]["Service"]) == "logs.us-east-1.amazonaws.com"
        uncovered = [name for name in groups[env] if not logs_may_use_key_for(statement, name)]
        assert uncovered == [], f"{env}'s own log groups the key refuses"
        foreign = [name for name in groups[other] if logs_may_use_key_for(statement, name)]
        assert foreign == [], f"{env}'s key serves {other}'s log groups"
    nocap = logs_key_statement(two_environments, "nocap")
    assert not [name for name in ACCOUNT_WIDE_LOG_GROUPS if logs_may_use_key_for(nocap, name)]
    assert not logs_may_use_key_for(nocap, "/aws/lambda/anything-else")


def test_arn_like_semantics() -> None:
    assert arn_like("arn:aws:logs:us-east-1:123456789012:log-group:sagelab-dev--serving-*", log_group_arn("sagelab-dev--serving-Fn-1/x"))
    assert not arn_like("arn:aws:logs:us-east-1:123456789012:log-group:sagelab-dev--serving-*", log_group_arn("sagelab-prod--serving-Fn"))
    assert not arn_like("arn:aws:logs:us-east-1:*:log-group:x", "arn:aws:logs:us-east-1:log-group:x")
    assert arn_like("arn:aws:logs:*:*:log-group:*", log_group_arn("anything"))


# -- access logs ---------------------------------------------------------------------------------
def test_access_logs_outlive_the_stack_even_when_destroy_was_chosen(two_environments: SynthResult) -> None:
    platform = two_environments.template("sagelab-dev--platform")
    buckets = of_type(platform, "AWS::S3::Bucket")
    destinations = {
        resolve(b["Properties"]["LoggingConfiguration"]["DestinationBucketName"]) for b in buckets.values() if "LoggingConfiguration" in b["Properties"]
    }
    (logs_marker,) = destinations
    logs_id = logs_marker.strip("<>")
    assert buckets[logs_id]["DeletionPolicy"] == "Retain" and buckets[logs_id]["UpdateReplacePolicy"] == "Retain"
    emptied = {resolve(r["Properties"]["BucketName"]) for r in of_type(platform, "Custom::S3AutoDeleteObjects").values()}
    assert logs_marker not in emptied, "nothing empties the access-log bucket on delete"
    assert {b["DeletionPolicy"] for k, b in buckets.items() if k != logs_id} == {"Delete"}, "the data buckets still follow the opt-in"


# -- network isolation ---------------------------------------------------------------------------
def test_the_model_runs_with_network_isolation(synthesized: SynthResult) -> None:
    (model,) = of_type(synthesized.template("sagelab-dev--serving"), "AWS::SageMaker::Model").values()
    assert model["Properties"]["EnableNetworkIsolation"] is True


NO_NETWORK_SERVING = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network isolation: no connection allowed")
socket.socket.connect = socket.socket.connect_ex = socket.create_connection = socket.getaddrinfo = refuse
sys.path.insert(0, sys.argv[1])  # as the container does with SAGEMAKER_SUBMIT_DIRECTORY
import inference
model = inference.model_fn(sys.argv[2])
body = json.dumps({"instances": [json.loads(sys.argv[3])]})
text, content_type = inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/json"), model), "application/json")
print(text)
"""


def test_the_model_artifact_carries_its_serving_code_and_serves_without_network(tmp_path: Path) -> None:
    """What the XGBoost container does under network isolation: SageMaker extracts model.tar.gz
    to /opt/ml/model, the container imports SAGEMAKER_PROGRAM from SAGEMAKER_SUBMIT_DIRECTORY and
    installs nothing (no requirements.txt). Here: a fresh interpreter (-I: no repository on the
    path) whose sockets refuse to connect serves a digit from the trained model directory alone."""
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "digits.csv").write_bytes(DIGITS_CSV.read_bytes())
    preprocess.preprocess(tmp_path / "input", tmp_path / "splits")
    splits, model_dir = tmp_path / "splits", tmp_path / "model"
    train.train(splits / "train", splits / "validation", splits / "spec", model_dir, train.Hyperparameters(num_round=20))
    assert f"/opt/ml/model/{model_contract.SERVING_CODE_DIR}" == MODEL_CODE_DIR, "the registered model points at the code train.py packs"
    code_dir = model_dir / model_contract.SERVING_CODE_DIR
    assert sorted(p.name for p in code_dir.iterdir()) == ["contract.py", "inference.py", "preprocess.py"], (
        "no requirements.txt: nothing to pip install at start"
    )
    row = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0]
    row += [0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
    completed = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(NO_NETWORK_SERVING), str(code_dir), str(model_dir), json.dumps(row)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout)["predictions"][0]["label"] == "0"


# -- the variants stay clean -----------------------------------------------------------------------
def test_variant_templates_have_no_cfn_lint_errors(two_environments: SynthResult) -> None:
    for name, template in two_environments.templates.items():
        assert lint_errors(template) == [], name


# -- every log group under a customer-managed key ----------------------------------------------------
def log_groups_without_a_customer_key(result: SynthResult) -> list[str]:
    """Every AWS::Logs::LogGroup of every stack must name a KMS key of these templates (the
    environment's key, or the class stack's WAF log key): resolved across stacks, not by name."""
    from tests.iam_policy import Env, Stacks

    stacks = Stacks(result.templates, Env())
    keys = {stacks.stand_in(stack, logical_id, "Arn") for stack, logical_id, _ in stacks._resources("AWS::KMS::Key")}
    return [
        f"{stack}/{logical_id}"
        for stack, logical_id, properties in stacks._resources("AWS::Logs::LogGroup")
        if stacks.resolve(stack, properties.get("KmsKeyId")) not in keys
    ]


def test_every_log_group_is_encrypted_with_a_customer_managed_key(synthesized: SynthResult, two_environments: SynthResult, shared_class: SynthResult) -> None:
    for result in (synthesized, two_environments, shared_class):
        assert log_groups_without_a_customer_key(result) == []


def test_the_unencrypted_log_group_finder_finds_one(synthesized: SynthResult) -> None:
    """Negative case: the copy function's log group as it was (no KmsKeyId)."""
    templates = json.loads(json.dumps(synthesized.templates))
    platform = templates["sagelab-dev--platform"]["Resources"]
    (logical_id,) = [k for k in platform if k.startswith("TrainingCopyFunctionLogs")]
    del platform[logical_id]["Properties"]["KmsKeyId"]
    assert log_groups_without_a_customer_key(SynthResult(synthesized.outdir, templates)) == [f"sagelab-dev--platform/{logical_id}"]
