"""FrontDoor: API Gateway (REST) + WAF + the Lambda that calls the SageMaker endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from sagelab.config import ServingConfig
from stacks.api_web_acl import CLASS_WEB_ACL_EXPORT, ApiWebAcl, associate_web_acl
from stacks.nag import acknowledge, acknowledge_tracing_grant
from stacks.naming import ResourceNames

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime" / "front_door"
REQUEST_SCHEMA = RUNTIME_DIR / "request_schema.json"
POWERTOOLS_ACCOUNT = "017000801446"  # AWS's account that publishes the Powertools layers
POWERTOOLS_LAYER_VERSION = 27
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
STAGE = "prod"
_SCHEMA_TYPES = {
    "object": apigw.JsonSchemaType.OBJECT,
    "array": apigw.JsonSchemaType.ARRAY,
    "number": apigw.JsonSchemaType.NUMBER,
    "integer": apigw.JsonSchemaType.INTEGER,
    "string": apigw.JsonSchemaType.STRING,
    "boolean": apigw.JsonSchemaType.BOOLEAN,
    "null": apigw.JsonSchemaType.NULL,
}


def json_schema(schema: dict[str, Any]) -> apigw.JsonSchema:
    """A draft-04 schema (as JSON) -> CDK's typed JsonSchema, for the API Gateway model."""
    kind = schema.get("type")
    kwargs: dict[str, Any] = {}
    if isinstance(kind, list):
        kwargs["type"] = [_SCHEMA_TYPES[k] for k in kind]
    elif kind is not None:
        kwargs["type"] = _SCHEMA_TYPES[kind]
    simple = {
        "title": "title",
        "description": "description",
        "required": "required",
        "minItems": "min_items",
        "maxItems": "max_items",
        "minProperties": "min_properties",
        "maxProperties": "max_properties",
    }
    for key, name in simple.items():
        if key in schema:
            kwargs[name] = schema[key]
    if "$schema" in schema:
        kwargs["schema"] = apigw.JsonSchemaVersion.DRAFT4
    if "properties" in schema:
        kwargs["properties"] = {name: json_schema(inner) for name, inner in schema["properties"].items()}
    if "items" in schema:
        kwargs["items"] = json_schema(schema["items"])
    if "anyOf" in schema:
        kwargs["any_of"] = [json_schema(inner) for inner in schema["anyOf"]]
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        kwargs["additional_properties"] = extra if isinstance(extra, bool) else json_schema(extra)
    unknown = set(schema) - set(simple) - {"type", "$schema", "properties", "items", "anyOf", "additionalProperties"}
    if unknown:
        raise ValueError(f"request schema uses {sorted(unknown)}, which json_schema() does not translate")
    return apigw.JsonSchema(**kwargs)


def _error_template(code: str, message: str) -> dict[str, str]:
    return {"application/json": json.dumps({"error": code, "message": message})}


class FrontDoor(Construct):
    """The public API of an environment.

    Props:
        names: the environment's names (the endpoint the Lambda may call).
        serving: auth mode (`api_key` with a usage plan, or `iam`), throttling, quota, WAF rate.
        log_key: KMS key for the access and function log groups.
        log_retention: retention of those log groups.

    Exposes `api`, `function`, `api_key` (None with IAM auth), `usage_plan`, `web_acl` (None unless `serving.waf` is `own`).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, names: ResourceNames, serving: ServingConfig, log_key: kms.IKey, log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        use_api_keys = serving.auth == "api_key"

        function_logs = logs.LogGroup(self, "FunctionLogs", retention=log_retention, encryption_key=log_key, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"SageLab {names.prefix}: front door")
        iam.ManagedPolicy(
            self,
            "FunctionPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(sid="InvokeTheOneEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=[names.endpoint_arn()]),
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn]),
            ],
        )
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-{LAMBDA_RUNTIME.name.replace('.', '')}-x86_64:{POWERTOOLS_LAYER_VERSION}",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["__pycache__", "*.pyc", "build_openapi.py", "__init__.py"]),
            layers=[layer],
            role=role,
            memory_size=512,
            timeout=Duration.seconds(25),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={"ENDPOINT_NAME": names.endpoint, "POWERTOOLS_SERVICE_NAME": "sagelab-front-door", "POWERTOOLS_LOG_LEVEL": "INFO"},
            description=f"SageLab {names.prefix}: validates requests and calls {names.endpoint}",
        )
        why_sync = "API Gateway invokes the front door synchronously and returns its errors to the caller; there is no event to dead-letter."
        acknowledge(
            self.function,
            ("Serverless-LambdaDLQ", why_sync),
            ("NIST.800.53.R5-LambdaDLQ", why_sync),
            (
                "NIST.800.53.R5-LambdaConcurrency",
                "Usage-plan and stage throttling bound concurrency; reserved concurrency would fail in accounts with the default 10-slot quota.",
            ),
            ("NIST.800.53.R5-LambdaInsideVPC", "The function only calls the SageMaker runtime API; a VPC would add NAT or endpoints and no protection."),
            ("AwsSolutions-L1", f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned here."),
            ("Serverless-LambdaLatestVersion", f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned here."),
        )

        # -- the API ---------------------------------------------------------------------------
        access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, encryption_key=log_key, removal_policy=RemovalPolicy.DESTROY)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{names.prefix}-api",
            description=f"SageLab {names.prefix}: predictions from the approved model",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                metrics_enabled=True,
                throttling_rate_limit=serving.throttle_rate_limit,
                throttling_burst_limit=serving.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True, response_length=True, status=True, user=True
                ),
            ),
        )
        # API Gateway's own refusals (bad body, missing key, throttling, quota) answer in the same
        # {"error", "message"} shape as the function's.
        for response_type, status, code, message in (
            (apigw.ResponseType.BAD_REQUEST_BODY, "400", "BadRequest", "invalid request body: $context.error.validationErrorString"),
            (apigw.ResponseType.DEFAULT_4_XX, None, "$context.error.responseType", "$context.error.message"),
            (apigw.ResponseType.DEFAULT_5_XX, None, "$context.error.responseType", "$context.error.message"),
        ):
            self.api.add_gateway_response(
                f"Response{response_type.response_type}", type=response_type, status_code=status, templates=_error_template(code, message)
            )

        request_model = self.api.add_model(
            "PredictRequest", content_type="application/json", model_name="PredictRequest", schema=json_schema(json.loads(REQUEST_SCHEMA.read_text()))
        )
        validator = self.api.add_request_validator(
            "BodyValidator", request_validator_name="predict-body", validate_request_body=True, validate_request_parameters=False
        )
        # One invoke permission for the whole API instead of two per method.
        integration = apigw.LambdaIntegration(self.function, proxy=True, scope_permission_to_method=False)
        authorization = apigw.AuthorizationType.IAM if not use_api_keys else apigw.AuthorizationType.NONE
        self.predict_method = self.api.root.add_resource("predict").add_method(
            "POST",
            integration,
            api_key_required=use_api_keys,
            authorization_type=authorization,
            request_validator=validator,
            request_models={"application/json": request_model},
        )
        self.api.root.add_resource("health").add_method("GET", integration)
        self.api.root.add_resource("openapi.json").add_method("GET", integration)

        self.api_key: apigw.IApiKey | None = None
        self.usage_plan: apigw.UsagePlan | None = None
        if use_api_keys:
            self.usage_plan = self.api.add_usage_plan(
                "UsagePlan",
                name=f"{names.prefix}-default",
                description="Per-client throttling and daily quota",
                throttle=apigw.ThrottleSettings(rate_limit=serving.throttle_rate_limit, burst_limit=serving.throttle_burst_limit),
                quota=apigw.QuotaSettings(limit=serving.quota_per_day, period=apigw.Period.DAY),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
            )
            self.api_key = self.api.add_api_key("DefaultKey", description=f"SageLab {names.prefix}: first client key")
            self.usage_plan.add_api_key(self.api_key)

        self._protect_with_waf(names, serving, log_key, log_retention)

        acknowledge(
            self.api,
            (
                "AwsSolutions-APIG4",
                "POST /predict requires an API key with a usage plan (or IAM auth by config); /health and /openapi.json are public by design.",
            ),
            ("AwsSolutions-COG4", "Clients are services holding API keys (or IAM principals), not Cognito users."),
            (
                "AwsSolutions-APIG6",
                "Execution logging needs the account-wide API Gateway CloudWatch role, which one environment's stack must not own; JSON access logs record every request.",
            ),
            (
                "NIST.800.53.R5-APIGWExecutionLoggingEnabled",
                "Execution logging needs the account-wide API Gateway CloudWatch role, which one environment's stack must not own; JSON access logs record every request.",
            ),
            (
                "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
                "Predictions depend on the whole request body and the current model; caching them would serve stale answers.",
            ),
            ("NIST.800.53.R5-APIGWSSLEnabled", "Backend client certificates authenticate HTTP backends; this API's only backend is a Lambda integration."),
            (
                "AwsSolutions-APIG2",
                "POST /predict validates its body against the PredictRequest model; GET /health and /openapi.json take no input to validate.",
            ),
            (
                "Serverless-APIGWDefaultThrottling",
                "Stage throttling is set from serving.throttle_rate_limit/burst_limit, and the usage plan throttles per key.",
            ),
        )
        if not use_api_keys:
            acknowledge(self.api, ("AwsSolutions-APIG4", "POST /predict uses IAM authorization; /health and /openapi.json are public by design."))
        acknowledge_tracing_grant(role, "front door")

    def _protect_with_waf(self, names: ResourceNames, serving: ServingConfig, log_key: kms.IKey, log_retention: logs.RetentionDays) -> None:
        """The environment's own web ACL, the class's shared one, or none (by `serving.waf`)."""
        stage_arn = self.api.deployment_stage.stage_arn
        self.web_acl: ApiWebAcl | None = None
        if serving.waf == "own":
            self.web_acl = ApiWebAcl(
                self,
                "Waf",
                name_prefix=names.prefix,
                rate_limit_per_5_minutes=serving.waf_rate_limit_per_5_minutes,
                log_key=log_key,
                log_retention=log_retention,
            )
            associate_web_acl(self, "WebAclAssociation", stage_arn, self.web_acl.web_acl_arn)
        elif serving.waf == "shared":
            # The class stack in this account and region exports its web ACL (stacks/class_stack.py).
            associate_web_acl(self, "WebAclAssociation", stage_arn, Fn.import_value(CLASS_WEB_ACL_EXPORT))
        else:
            reason = "serving.waf is off by config: API keys with usage-plan throttling and quota, stage throttling and the account's limits protect this API."
            acknowledge(self.api, ("AwsSolutions-APIG3", reason), ("NIST.800.53.R5-APIGWAssociatedWithWAF", reason))
