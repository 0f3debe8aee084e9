"""The serving stack: front door, endpoint, approval deployer and alarms, on the synthesized template."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from pipeline_steps import contract
from tests.conftest import SynthResult, synth

STACK = "sagelab-dev--serving"


@pytest.fixture(scope="module")
def serving_json(synthesized: SynthResult) -> dict[str, Any]:
    return synthesized.template(STACK)


@pytest.fixture(scope="module")
def template(serving_json: dict[str, Any]) -> Template:
    return Template.from_json(serving_json)


def of_type(template_json: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == resource_type}


def test_api_keys_and_usage_plan(template: Template) -> None:
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan", {"Throttle": {"RateLimit": 50, "BurstLimit": 100}, "Quota": {"Limit": 10000, "Period": "DAY"}}
    )
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {"HttpMethod": "POST", "ApiKeyRequired": True, "RequestValidatorId": Match.any_value(), "RequestModels": {"application/json": Match.any_value()}},
    )


def test_request_model_is_the_checked_in_schema(serving_json: dict[str, Any]) -> None:
    (model,) = of_type(serving_json, "AWS::ApiGateway::Model").values()
    schema = model["Properties"]["Schema"]
    expected = json.loads((Path(__file__).resolve().parent.parent / "stacks/front_door/runtime/request_schema.json").read_text())
    assert schema["properties"]["instances"]["maxItems"] == expected["properties"]["instances"]["maxItems"] == 1000
    assert schema["required"] == ["instances"] and schema["additionalProperties"] is False
    assert schema["properties"]["instances"]["items"]["anyOf"] == expected["properties"]["instances"]["items"]["anyOf"]
    (validator,) = of_type(serving_json, "AWS::ApiGateway::RequestValidator").values()
    assert validator["Properties"]["ValidateRequestBody"] is True


def test_waf_with_rate_rule_and_managed_groups_is_associated_and_logged(template: Template, serving_json: dict[str, Any]) -> None:
    (acl,) = of_type(serving_json, "AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert rules["rate-limit-per-ip"]["Statement"]["RateBasedStatement"] == {"Limit": 1000, "AggregateKeyType": "IP"}
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAmazonIpReputationList"} <= set(rules)
    template.has_resource_properties("AWS::WAFv2::WebACLAssociation", {"ResourceArn": Match.any_value(), "WebACLArn": Match.any_value()})
    template.has_resource_properties("AWS::WAFv2::LoggingConfiguration", {"LogDestinationConfigs": Match.any_value()})


def test_stage_has_json_access_logs_tracing_and_throttling(serving_json: dict[str, Any]) -> None:
    (stage,) = of_type(serving_json, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert props["AccessLogSetting"]["Format"].startswith("{") and "$context.requestId" in props["AccessLogSetting"]["Format"]
    method = props["MethodSettings"][0]
    assert method["ThrottlingRateLimit"] == 50 and method["ThrottlingBurstLimit"] == 100
    for group in of_type(serving_json, "AWS::Logs::LogGroup").values():
        assert "KmsKeyId" in group["Properties"] and "RetentionInDays" in group["Properties"]


def test_front_door_may_invoke_only_the_one_endpoint(serving_json: dict[str, Any]) -> None:
    statements = [
        s
        for p in of_type(serving_json, "AWS::IAM::ManagedPolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "sagemaker:InvokeEndpoint" in json.dumps(s["Action"])
    ]
    assert len(statements) == 1
    assert statements[0]["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":sagemaker:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, ":endpoint/sagelab-dev--endpoint"],
        ]
    }
    function = next(f for k, f in of_type(serving_json, "AWS::Lambda::Function").items() if k.startswith("FrontDoorFunction"))
    assert function["Properties"]["Environment"]["Variables"]["ENDPOINT_NAME"] == "sagelab-dev--endpoint"
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    assert any("AWSLambdaPowertoolsPythonV3-python312-x86_64" in json.dumps(layer) for layer in function["Properties"]["Layers"])


def test_endpoint_exists_only_when_a_model_package_is_set(serving_json: dict[str, Any]) -> None:
    assert serving_json["Parameters"]["ModelPackageArn"]["Default"] == ""
    assert serving_json["Conditions"]["HasModel"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ModelPackageArn"}, ""]}]}
    for resource_type in (
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
    ):
        resources = of_type(serving_json, resource_type)
        assert resources, resource_type
        assert all(r.get("Condition") == "HasModel" for r in resources.values()), resource_type
    (endpoint,) = of_type(serving_json, "AWS::SageMaker::Endpoint").values()
    assert endpoint["Properties"]["EndpointName"] == "sagelab-dev--endpoint"
    rollback = endpoint["Properties"]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    (alarm_id,) = [k for k in serving_json["Resources"] if k.startswith("MonitoringEndpointServerErrors")]
    assert rollback == [{"AlarmName": {"Ref": alarm_id}}]
    (model,) = of_type(serving_json, "AWS::SageMaker::Model").values()
    assert model["Properties"]["PrimaryContainer"] == {"ModelPackageName": {"Ref": "ModelPackageArn"}}
    (config,) = of_type(serving_json, "AWS::SageMaker::EndpointConfig").values()
    capture = config["Properties"]["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 10 and "KmsKeyId" in config["Properties"]


def test_approval_rule_drives_the_deployer(template: Template, serving_json: dict[str, Any]) -> None:
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {"ModelPackageGroupName": ["sagelab-dev--models"], "ModelApprovalStatus": ["Approved"]},
            },
            "Targets": [
                Match.object_like({"DeadLetterConfig": Match.any_value(), "RetryPolicy": {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 21600}})
            ],
        },
    )
    deployer = next(f for k, f in of_type(serving_json, "AWS::Lambda::Function").items() if k.startswith("DeployerFunction"))
    variables = deployer["Properties"]["Environment"]["Variables"]
    assert variables["SERVING_STACK_NAME"] == "sagelab-dev--serving" and variables["PARAMETER_NAME"] == "ModelPackageArn"
    update = [
        s
        for p in of_type(serving_json, "AWS::IAM::ManagedPolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "cloudformation:UpdateStack" in s["Action"]
    ]
    assert len(update) == 1 and "stack/sagelab-dev--serving/*" in json.dumps(update[0]["Resource"])


def test_alarms_and_dashboard(serving_json: dict[str, Any]) -> None:
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in of_type(serving_json, "AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {
        f"sagelab-dev--{n}"
        for n in ("ApiServerErrors", "ApiLatencyP99", "FunctionThrottles", "EndpointServerErrors", "ModelLatencyP99", "DriftViolations", "FeatureDrift")
    }
    assert all(a["AlarmActions"] for a in alarms.values())
    assert alarms["sagelab-dev--ApiLatencyP99"]["ExtendedStatistic"] == "p99"
    assert of_type(serving_json, "AWS::CloudWatch::Dashboard")


def test_serverless_option_and_iam_auth(tmp_path: Path) -> None:
    config = tmp_path / "serverless.yaml"
    config.write_text("environments:\n  dev:\n    serving: {mode: serverless, auth: iam, serverless_memory_mb: 3072, serverless_max_concurrency: 7}\n")
    result = synth(tmp_path / "out", {"config": str(config)})
    serving = result.template(STACK)
    (endpoint_config,) = of_type(serving, "AWS::SageMaker::EndpointConfig").values()
    assert endpoint_config["Properties"]["ProductionVariants"][0]["ServerlessConfig"] == {"MaxConcurrency": 7, "MemorySizeInMB": 3072}
    assert not of_type(serving, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert not of_type(serving, "AWS::ApiGateway::ApiKey")
    post = next(m for m in of_type(serving, "AWS::ApiGateway::Method").values() if m["Properties"]["HttpMethod"] == "POST")
    assert post["Properties"]["AuthorizationType"] == "AWS_IAM"
    assert anonymous_routes_to_a_backend(serving) == [], "with serving.auth: iam, GET /openapi.json is signed as POST /predict is"


def test_model_package_can_be_pinned_from_context(tmp_path: Path) -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/sagelab-dev--models/3"
    result = synth(tmp_path / "out", {"model_package_arn": arn})
    assert result.template(STACK)["Parameters"]["ModelPackageArn"]["Default"] == arn


# -- front door hardening (issue 12 findings 7 and 8) -----------------------------------------------
def anonymous_routes_to_a_backend(serving: dict[str, Any]) -> list[str]:
    """Methods an anonymous caller could use to reach anything but API Gateway itself: every
    method that is not a MOCK must require an API key covered by a usage plan of this API, or a
    SigV4 signature (AWS_IAM). GET /openapi.json describes the model's training values and runs the
    function; only the MOCK GET /health may be anonymous."""
    plans = of_type(serving, "AWS::ApiGateway::UsagePlan")
    keyed = bool(plans) and bool(of_type(serving, "AWS::ApiGateway::UsagePlanKey"))
    anonymous = []
    for logical_id, method in of_type(serving, "AWS::ApiGateway::Method").items():
        properties = method["Properties"]
        if properties.get("Integration", {}).get("Type") == "MOCK":
            continue
        signed = properties.get("AuthorizationType") == "AWS_IAM"
        if not signed and not (properties.get("ApiKeyRequired") is True and keyed):
            anonymous.append(f"{logical_id} {properties['HttpMethod']}")
    return anonymous


def test_the_anonymous_route_finder_finds_an_unkeyed_method(serving_json: dict[str, Any]) -> None:
    """Negative case: the method of today's code (GET /openapi.json with no key, no signature)."""
    planted = json.loads(json.dumps(serving_json))
    (logical_id,) = [
        k
        for k, m in of_type(planted, "AWS::ApiGateway::Method").items()
        if m["Properties"]["HttpMethod"] == "GET" and "Uri" in m["Properties"].get("Integration", {})
    ]
    planted["Resources"][logical_id]["Properties"].update(ApiKeyRequired=False, AuthorizationType="NONE")
    assert anonymous_routes_to_a_backend(planted) == [f"{logical_id} GET"]


def target(value: Any) -> str:
    """The logical id a `Ref` or `Fn::GetAtt` points at."""
    if "Ref" in value:
        return str(value["Ref"])
    return str(value["Fn::GetAtt"][0])


def render(value: Any, refs: dict[str, str]) -> str:
    """A string intrinsic (Fn::Join of literals and Refs) with each Ref replaced by `refs`."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return refs[value["Ref"]]
    separator, parts = value["Fn::Join"]
    return str(separator).join(render(part, refs) for part in parts)


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM/Lambda ARN wildcards: `*` spans any characters including `/`, `?` one character."""
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), arn) is not None


def front_door_function(serving_json: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return next((k, f) for k, f in of_type(serving_json, "AWS::Lambda::Function").items() if k.startswith("FrontDoorFunction"))


def test_waf_logs_redact_api_keys_signatures_and_session_tokens(serving_json: dict[str, Any]) -> None:
    (logging_config,) = of_type(serving_json, "AWS::WAFv2::LoggingConfiguration").values()
    redacted = {field["SingleHeader"]["Name"].lower() for field in logging_config["Properties"].get("RedactedFields", []) if "SingleHeader" in field}
    assert {"x-api-key", "authorization", "x-amz-security-token"} <= redacted


def test_waf_and_access_logs_outlive_the_stack(serving_json: dict[str, Any]) -> None:
    (logging_config,) = of_type(serving_json, "AWS::WAFv2::LoggingConfiguration").values()
    (stage,) = of_type(serving_json, "AWS::ApiGateway::Stage").values()
    audit_groups = {target(d) for d in logging_config["Properties"]["LogDestinationConfigs"]} | {
        target(stage["Properties"]["AccessLogSetting"]["DestinationArn"])
    }
    assert len(audit_groups) == 2
    for logical_id in audit_groups:
        group = serving_json["Resources"][logical_id]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["DeletionPolicy"] == "Retain" and group["UpdateReplacePolicy"] == "Retain", logical_id


def test_health_is_a_mock_and_openapi_and_predict_reach_the_function_on_their_own_permissions(serving_json: dict[str, Any]) -> None:
    from stacks.front_door.build_openapi import health_body

    paths = {k: r["Properties"]["PathPart"] for k, r in of_type(serving_json, "AWS::ApiGateway::Resource").items()}
    methods = {
        (paths[target(m["Properties"]["ResourceId"])], m["Properties"]["HttpMethod"]): m["Properties"]
        for m in of_type(serving_json, "AWS::ApiGateway::Method").values()
    }
    assert set(methods) == {("predict", "POST"), ("health", "GET"), ("openapi.json", "GET")}
    integration = methods[("health", "GET")]["Integration"]
    assert integration["Type"] == "MOCK" and "Uri" not in integration
    assert integration["IntegrationResponses"] == [{"StatusCode": "200", "ResponseTemplates": {"application/json": health_body("sagelab-dev--endpoint")}}]
    function_id, _ = front_door_function(serving_json)
    for route in (("predict", "POST"), ("openapi.json", "GET")):
        integration = methods[route]["Integration"]
        assert integration["Type"] == "AWS_PROXY" and function_id in json.dumps(integration["Uri"]), route
    assert anonymous_routes_to_a_backend(serving_json) == []

    # API Gateway may invoke the function for POST /predict and GET /openapi.json of this stage only (IAM wildcard semantics).
    permissions = [p["Properties"] for p in of_type(serving_json, "AWS::Lambda::Permission").values() if target(p["Properties"]["FunctionName"]) == function_id]
    assert permissions and all(p["Principal"] == "apigateway.amazonaws.com" for p in permissions)
    (api_id,) = of_type(serving_json, "AWS::ApiGateway::RestApi")
    (stage_id,) = of_type(serving_json, "AWS::ApiGateway::Stage")
    refs = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", api_id: "a1b2c3", stage_id: "prod"}
    source_arns = [render(p["SourceArn"], refs) for p in permissions]
    api_arn = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3"
    for allowed in ("prod/POST/predict", "prod/GET/openapi.json"):
        assert any(arn_matches(s, f"{api_arn}/{allowed}") for s in source_arns), allowed
    for other in ("prod/GET/health", "prod/POST/openapi.json", "test-invoke-stage/POST/predict", "test-invoke-stage/GET/openapi.json", "prod/DELETE/predict"):
        assert not any(arn_matches(s, f"{api_arn}/{other}") for s in source_arns), other


def test_the_public_openapi_route_is_throttled_below_the_functions_concurrency(serving_json: dict[str, Any]) -> None:
    (stage,) = of_type(serving_json, "AWS::ApiGateway::Stage").values()
    (setting,) = [m for m in stage["Properties"]["MethodSettings"] if m["ResourcePath"] == "/~1openapi.json"]
    assert setting["HttpMethod"] == "GET" and setting["ThrottlingBurstLimit"] < 20 and setting["ThrottlingRateLimit"] <= 5


def test_the_served_model_parameters_reach_the_front_door(serving_json: dict[str, Any]) -> None:
    parameters = serving_json["Parameters"]
    assert parameters["ModelAlgorithm"]["AllowedValues"] == ["xgboost", "kmeans", "autopilot", "custom"]  # the contract's order
    assert parameters["ModelAlgorithm"]["Default"] == "xgboost"
    # The problem types evaluate.py writes (tests/test_problem_types.py ties the deployer's list to its output).
    assert parameters["ModelProblemType"]["AllowedValues"] == ["", *contract.PROBLEM_FAMILIES] and parameters["ModelProblemType"]["Default"] == ""
    uri = re.compile(parameters["ModelDescriptionUri"]["AllowedPattern"])
    good = "s3://sagelab-dev--platform-storageartifacts-1a2b3c/models/evaluations/exec-1/kmeans-evaluation/model_description.json"
    assert parameters["ModelDescriptionUri"]["Default"] == "" and uri.fullmatch("") and uri.fullmatch(good)
    for bad in (
        good.replace("models/evaluations", "pipeline-runs"),
        good.replace("model_description.json", "model.tar.gz"),
        "https://x/model_description.json",
    ):
        assert not uri.fullmatch(bad), bad
    _, function = front_door_function(serving_json)
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["MODEL_ALGORITHM"] == {"Ref": "ModelAlgorithm"}
    assert variables["MODEL_PROBLEM_TYPE"] == {"Ref": "ModelProblemType"}
    assert variables["MODEL_DESCRIPTION_URI"] == {"Ref": "ModelDescriptionUri"}
    assert "Fn::ImportValue" in json.dumps(variables["ARTIFACTS_BUCKET"])


def test_front_door_function_reserves_nothing_by_default_so_a_new_account_can_deploy(synthesized: SynthResult, serving_json: dict[str, Any]) -> None:
    # A new account's pool is 10 and Lambda keeps 100 unreserved: any reservation fails its first
    # deploy (issue #20). The rule it trips is acknowledged with that reason, not silenced blindly.
    _, function = front_door_function(serving_json)
    assert "ReservedConcurrentExecutions" not in function["Properties"]
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    reasons = [
        finding.get("reason", "") + json.dumps(finding)
        for plugin in report["pluginReports"]
        for finding in plugin.get("suppressedViolations", [])
        if finding["ruleName"] == "NIST.800.53.R5-LambdaConcurrency"
        and any("/FrontDoor/" in violation["constructPath"] for violation in finding["violatingConstructs"])
    ]
    assert reasons and all("new account" in reason for reason in reasons), reasons


def test_in_code_tracing_is_off_so_cold_starts_skip_the_xray_sdk(serving_json: dict[str, Any]) -> None:
    _, function = front_door_function(serving_json)
    assert function["Properties"]["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}  # Lambda's own segments stay


def test_gateway_refusals_carry_the_request_id(serving_json: dict[str, Any]) -> None:
    responses = of_type(serving_json, "AWS::ApiGateway::GatewayResponse").values()
    assert responses
    for response in responses:
        body = json.loads(response["Properties"]["ResponseTemplates"]["application/json"])
        assert body["requestId"] == "$context.requestId" and set(body) == {"error", "message", "requestId"}


def test_the_front_door_reads_model_descriptions_and_nothing_else(synthesized: SynthResult) -> None:
    from tests.iam_policy import Env, Stacks, is_allowed

    stacks = Stacks(synthesized.templates, Env(region="us-east-1", account="123456789012"))
    (front_door_role,) = [r for r in stacks.roles() if r.stack == STACK and r.logical_id.startswith("FrontDoorFunctionRole")]
    statements = stacks.identity_policies(front_door_role)
    function_id, function = front_door_function(synthesized.template(STACK))
    bucket = stacks.resolve(STACK, function["Properties"]["Environment"]["Variables"]["ARTIFACTS_BUCKET"])
    (key_statement,) = [s for s in statements if "kms:Decrypt" in s.actions]
    (key_arn,) = key_statement.resources
    description = f"arn:aws:s3:::{bucket}/models/evaluations/exec-1/kmeans-evaluation/model_description.json"
    assert is_allowed(statements, "s3:GetObject", description)
    for other in (
        description.replace("model_description.json", "evaluation.json"),
        f"arn:aws:s3:::{bucket}/models/exec-1/model.tar.gz",
        f"arn:aws:s3:::{bucket}/code/inference.py",
        description.replace(bucket, "sagelab-bob-artifacts"),
    ):
        assert not is_allowed(statements, "s3:GetObject", other), other
    assert not any(is_allowed(statements, action, description) for action in ("s3:PutObject", "s3:ListBucket", "s3:DeleteObject"))
    via_s3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}"}
    assert is_allowed(statements, "kms:Decrypt", key_arn, via_s3)
    assert not is_allowed(statements, "kms:Decrypt", key_arn, {**via_s3, "kms:ViaService": "sqs.us-east-1.amazonaws.com"})
    assert not is_allowed(
        statements, "kms:Decrypt", key_arn, {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::other"}
    )
    assert not is_allowed(statements, "kms:Decrypt", key_arn, {})
    assert function_id
