"""FrontDoor: API Gateway (REST) + WAF + the Lambda that calls the SageMaker endpoint.

POST /predict        -> the Lambda (reserved concurrency) -> the endpoint
GET  /health         -> MOCK integration: API Gateway answers, no Lambda, no Lambda throttle
GET  /openapi.json   -> the Lambda: the API description with the served model's description merged
                        in (feature names, labels, categorical values: training data), so it takes
                        /predict's auth (API key or IAM) and a method throttle of its own
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aws_cdk import Duration, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline_steps import contract
from stacks.api_web_acl.construct import CLASS_WEB_ACL_EXPORT, ApiWebAcl, associate_web_acl
from stacks.app.nag import acknowledge, acknowledge_policy_wildcards, acknowledge_tracing_grant
from stacks.data_buckets.construct import key_use_through_s3
from stacks.front_door.build_openapi import REQUEST_SCHEMA, RUNTIME_DIR, health_body
from stacks.front_door.runtime.capture import FRONT_DOOR_CAPTURE
from stacks.lambda_runtime import LAMBDA_RUNTIME, code_with_contract, powertools_layer
from stacks.naming import ResourceArns

STAGE = "prod"
# None: a new account (concurrency quota 10, of which Lambda keeps 100 unreserved) cannot reserve any.
DEFAULT_RESERVED_CONCURRENCY: int | None = None
# GET /openapi.json reaches the function: besides /predict's auth, a low method throttle keeps a
# key holder's polling from taking the reserved concurrency that /predict needs.
OPENAPI_RATE_LIMIT, OPENAPI_BURST_LIMIT = 5, 10
# Where evaluate.py writes the model's description (decision 0011), relative to the artifacts bucket.
MODEL_DESCRIPTION_KEYS = f"{contract.EVALUATIONS_PREFIX}/*/{contract.MODEL_DESCRIPTION_FILE_NAME}"
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
    schema_type = schema.get("type")
    kwargs: dict[str, Any] = {}
    if isinstance(schema_type, list):
        kwargs["type"] = [_SCHEMA_TYPES[t] for t in schema_type]
    elif schema_type is not None:
        kwargs["type"] = _SCHEMA_TYPES[schema_type]
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
    return {"application/json": json.dumps({"error": code, "message": message, "requestId": "$context.requestId"})}


@dataclass(frozen=True)
class ServedModelSettings:
    """What the function is told about the served model, its MODEL_* environment (references to the
    serving stack's parameters: the approval deployer sets them from the model package's
    CustomerMetadataProperties)."""

    algorithm: str
    problem_type: str
    description_uri: str


class FrontDoorSettings(Protocol):
    """What the front door reads of an environment's serving settings (the config's `serving` section
    has these; the construct does not depend on the config module)."""

    @property
    def auth(self) -> Literal["api_key", "iam"]: ...

    @property
    def throttle_rate_limit(self) -> int: ...

    @property
    def throttle_burst_limit(self) -> int: ...

    @property
    def quota_per_day(self) -> int: ...

    @property
    def waf(self) -> Literal["own", "shared", "off"]: ...

    @property
    def waf_rate_limit_per_5_minutes(self) -> int: ...

    @property
    def data_capture_percent(self) -> int: ...


class FrontDoor(Construct):
    """The public API of an environment.

    Props:
        names: the environment's names (the endpoint the Lambda may call).
        serving: auth mode (`api_key` with a usage plan, or `iam`), throttling, quota, WAF rate.
        log_key: KMS key for the access, WAF and function log groups.
        log_retention: retention of those log groups.
        reserved_concurrency: the function's reserved concurrency, which caps what /predict can
            take from the account's Lambda pool; None (the default) leaves it unreserved (accounts
            whose concurrency quota is 10 cannot reserve any; synth counts reservations against
            the account's quota, sagelab/quotas.py).
        trace_in_code: load the X-Ray SDK in the function for subsegments (default False: it
            costs ~200 ms per cold start; Lambda's and API Gateway's active tracing stay on).
        model: the served model's algorithm, problem type and description URI (the function's
            MODEL_* environment); default: an XGBoost model without a description.
        artifacts_bucket: where model descriptions live; the function may read
            `MODEL_DESCRIPTION_KEYS` in it (and decrypt them with `log_key`, the environment key,
            through S3 only). None: no description is readable. From another stack, give a bucket
            whose ARN is an explicit import (`Stack.export_value`): the nag acknowledgment of the
            key wildcard names it.

    Exposes `api`, `function`, `predict_method`, `api_key` (None with IAM auth), `usage_plan`,
    `web_acl` (the environment's own ApiWebAcl, None unless `serving.waf` is `own`), `access_logs`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceArns,
        serving: FrontDoorSettings,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        reserved_concurrency: int | None = DEFAULT_RESERVED_CONCURRENCY,
        trace_in_code: bool = False,
        model: ServedModelSettings | None = None,
        artifacts_bucket: s3.IBucket | None = None,
    ) -> None:
        if reserved_concurrency is not None and reserved_concurrency < 1:
            raise ValueError(f"reserved_concurrency must be at least 1 (or None for unreserved), not {reserved_concurrency}")
        super().__init__(scope, construct_id)
        self.function = self._function(names, log_key, log_retention, reserved_concurrency, trace_in_code, model, artifacts_bucket)
        if artifacts_bucket is not None and serving.data_capture_percent > 0:
            self._capture(serving.data_capture_percent, artifacts_bucket, log_key)
        # Access and WAF logs are the audit trail: they outlive the stack.
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, encryption_key=log_key, removal_policy=RemovalPolicy.RETAIN)
        self.api = self._api(names, serving, self.access_logs)
        self._gateway_responses()
        self.predict_method = self._routes(names, serving)
        self.api_key, self.usage_plan = self._usage_plan(names, serving)
        self.web_acl = self._web_acl(names, serving, log_key, log_retention)
        self._acknowledge_api(serving)

    # -- the function ----------------------------------------------------------------------------
    def _function(
        self,
        names: ResourceArns,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        reserved_concurrency: int | None,
        trace_in_code: bool,
        model: ServedModelSettings | None,
        artifacts_bucket: s3.IBucket | None,
    ) -> lambda_.Function:
        function_logs = logs.LogGroup(self, "FunctionLogs", retention=log_retention, encryption_key=log_key, removal_policy=RemovalPolicy.DESTROY)
        self.role = role = iam.Role(
            self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"SageLab {names.environment}: front door"
        )
        statements = [
            iam.PolicyStatement(sid="InvokeTheOneEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=[names.endpoint_arn()]),
            iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn]),
        ]
        if artifacts_bucket is not None:
            statements += [
                # Model descriptions only: not the models, data or anything else in the bucket.
                iam.PolicyStatement(
                    sid="ReadModelDescriptions", actions=["s3:GetObject"], resources=[artifacts_bucket.arn_for_objects(MODEL_DESCRIPTION_KEYS)]
                ),
                # The bucket is SSE-KMS with a bucket key: S3 decrypts on the function's behalf.
                key_use_through_s3(
                    "DecryptModelDescriptions", ["kms:Decrypt"], log_key, artifacts_bucket, [artifacts_bucket.arn_for_objects(MODEL_DESCRIPTION_KEYS)]
                ),
            ]
        policy = iam.ManagedPolicy(self, "FunctionPolicy", roles=[role], statements=statements)
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda _statement: (
                "Model descriptions are written per pipeline execution (models/evaluations/<execution id>/.../model_description.json); "
                "the execution id is known only at run time."
            ),
        )
        layer = powertools_layer(self)
        function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="handler.lambda_handler",
            code=code_with_contract(RUNTIME_DIR),
            layers=[layer],
            role=role,
            memory_size=512,
            timeout=Duration.seconds(25),
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "ENDPOINT_NAME": names.endpoint,
                contract.ENV_ALGORITHM: model.algorithm if model else contract.DEFAULT_ALGORITHM,
                contract.ENV_PROBLEM_TYPE: model.problem_type if model else "",
                contract.ENV_DESCRIPTION_URI: model.description_uri if model else "",
                "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name if artifacts_bucket else "",
                "POWERTOOLS_SERVICE_NAME": "sagelab-front-door",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_TRACE_DISABLED": "false" if trace_in_code else "true",
            },
            description=f"SageLab {names.environment}: validates requests and calls {names.endpoint}",
        )
        why_sync = "API Gateway invokes the front door synchronously and returns its errors to the caller; there is no event to dead-letter."
        same_runtime = f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned here."
        acknowledge(
            function,
            ("Serverless-LambdaDLQ", why_sync),
            ("NIST.800.53.R5-LambdaDLQ", why_sync),
            (
                "NIST.800.53.R5-LambdaInsideVPC",
                "The function only calls the SageMaker runtime API and reads one S3 object; a VPC would add NAT or endpoints and no protection.",
            ),
            ("AwsSolutions-L1", same_runtime),
            ("Serverless-LambdaLatestVersion", same_runtime),
        )
        if reserved_concurrency is None:
            acknowledge(
                function,
                (
                    "NIST.800.53.R5-LambdaConcurrency",
                    "Reserved concurrency is off unless serving.front_door_reserved_concurrency is set: a new account's quota is 10 and Lambda keeps 100 unreserved, so any reservation fails its first deploy; stage and usage-plan throttling bound the function.",
                ),
            )
        acknowledge_tracing_grant(role, "front door")
        return function

    def _capture(self, percent: int, artifacts_bucket: s3.IBucket, key: kms.IKey) -> None:
        """Data capture (stacks/front_door/runtime/capture.py): the function writes sampled requests below
        the front door's capture prefix, and nowhere else; the bucket's default SSE-KMS encrypts them."""
        self.function.add_environment("DATA_CAPTURE_PERCENT", str(percent))
        captured = artifacts_bucket.arn_for_objects(f"{FRONT_DOOR_CAPTURE}*")
        policy = iam.ManagedPolicy(
            self,
            "CapturePolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(sid="WriteCapturedRequests", actions=["s3:PutObject"], resources=[captured]),
                key_use_through_s3("EncryptCapturedRequests", ["kms:GenerateDataKey"], key, artifacts_bucket, [captured]),
            ],
        )
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda _statement: "Captured requests get one object per request (hour folders and the request id in the key), named at run time.",
        )

    # -- the API ---------------------------------------------------------------------------------
    def _api(self, names: ResourceArns, serving: FrontDoorSettings, access_logs: logs.LogGroup) -> apigw.RestApi:
        return apigw.RestApi(
            self,
            "Api",
            rest_api_name=names.api,
            description=f"SageLab {names.environment}: predictions from the approved model",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                metrics_enabled=True,
                throttling_rate_limit=serving.throttle_rate_limit,
                throttling_burst_limit=serving.throttle_burst_limit,
                method_options={
                    "/openapi.json/GET": apigw.MethodDeploymentOptions(throttling_rate_limit=OPENAPI_RATE_LIMIT, throttling_burst_limit=OPENAPI_BURST_LIMIT)
                },
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True, response_length=True, status=True, user=True
                ),
            ),
        )

    def _gateway_responses(self) -> None:
        # API Gateway's own refusals (bad body, missing key or signature, throttling, quota) answer
        # in the same {"error", "message", "requestId"} shape as the function's.
        for response_type, status, code, message in (
            (apigw.ResponseType.BAD_REQUEST_BODY, "400", "BadRequest", "invalid request body: $context.error.validationErrorString"),
            (apigw.ResponseType.DEFAULT_4_XX, None, "$context.error.responseType", "$context.error.message"),
            (apigw.ResponseType.DEFAULT_5_XX, None, "$context.error.responseType", "$context.error.message"),
        ):
            self.api.add_gateway_response(
                f"Response{response_type.response_type}", type=response_type, status_code=status, templates=_error_template(code, message)
            )

    def _routes(self, names: ResourceArns, serving: FrontDoorSettings) -> apigw.Method:
        request_model = self.api.add_model(
            "PredictRequest", content_type="application/json", model_name="PredictRequest", schema=json_schema(json.loads(REQUEST_SCHEMA.read_text()))
        )
        validator = self.api.add_request_validator(
            "BodyValidator", request_validator_name="predict-body", validate_request_body=True, validate_request_parameters=False
        )
        use_api_keys = serving.auth == "api_key"
        # The function may be invoked by POST /predict of this API's stage and nothing else.
        integration = apigw.LambdaIntegration(self.function, proxy=True, scope_permission_to_method=True, allow_test_invoke=False)
        predict = self.api.root.add_resource("predict").add_method(
            "POST",
            integration,
            api_key_required=use_api_keys,
            authorization_type=apigw.AuthorizationType.NONE if use_api_keys else apigw.AuthorizationType.IAM,
            request_validator=validator,
            request_models={"application/json": request_model},
        )
        # The only anonymous route: API Gateway answers it itself, nothing reaches the function.
        self.api.root.add_resource("health").add_method("GET", _static_json(health_body(names.endpoint)), method_responses=[_OK])
        # The served model's description names its features, labels and categorical values (values
        # of the training data), and the function answers it: /predict's callers only, so anonymous
        # traffic never reaches the function (its own scoped invoke permission: this stage's GET).
        describe = apigw.LambdaIntegration(self.function, proxy=True, scope_permission_to_method=True, allow_test_invoke=False)
        self.openapi_method = self.api.root.add_resource("openapi.json").add_method(
            "GET",
            describe,
            api_key_required=use_api_keys,
            authorization_type=apigw.AuthorizationType.NONE if use_api_keys else apigw.AuthorizationType.IAM,
        )
        return predict

    def _usage_plan(self, names: ResourceArns, serving: FrontDoorSettings) -> tuple[apigw.IApiKey | None, apigw.UsagePlan | None]:
        if serving.auth != "api_key":
            return None, None
        # A key identifies a client for its plan's throttle and quota; it is not authentication
        # (README: "Calling the API"). serving.auth: iam authenticates callers with SigV4.
        usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            name=names.name("default"),
            description="Per-client throttling and daily quota",
            throttle=apigw.ThrottleSettings(rate_limit=serving.throttle_rate_limit, burst_limit=serving.throttle_burst_limit),
            quota=apigw.QuotaSettings(limit=serving.quota_per_day, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        api_key = self.api.add_api_key("DefaultKey", description=f"SageLab {names.environment}: first client key")
        usage_plan.add_api_key(api_key)
        return api_key, usage_plan

    # -- WAF ---------------------------------------------------------------------------------------
    def _web_acl(self, names: ResourceArns, serving: FrontDoorSettings, log_key: kms.IKey, log_retention: logs.RetentionDays) -> ApiWebAcl | None:
        """The environment's own web ACL, the class's shared one, or none (by `serving.waf`)."""
        stage_arn = self.api.deployment_stage.stage_arn
        if serving.waf == "shared":
            # The class stack in this account and region exports its web ACL (stacks/class_stack.py).
            associate_web_acl(self, "WebAclAssociation", stage_arn, Fn.import_value(CLASS_WEB_ACL_EXPORT))
            return None
        if serving.waf == "off":
            reason = "serving.waf is off by config: API keys with usage-plan throttling and quota, stage throttling and the account's limits protect this API."
            acknowledge(self.api, ("AwsSolutions-APIG3", reason), ("NIST.800.53.R5-APIGWAssociatedWithWAF", reason))
            return None
        web_acl = ApiWebAcl(
            self,
            "Waf",
            name_prefix=names.name("waf"),
            rate_limit_per_5_minutes=serving.waf_rate_limit_per_5_minutes,
            log_key=log_key,
            log_retention=log_retention,
        )
        associate_web_acl(self, "WebAclAssociation", stage_arn, web_acl.web_acl_arn)
        return web_acl

    def _acknowledge_api(self, serving: FrontDoorSettings) -> None:
        execution_logging = "Execution logging needs the account-wide API Gateway CloudWatch role, which one environment's stack must not own; JSON access logs record every request."
        acknowledge(
            self.api,
            (
                "AwsSolutions-APIG4",
                "POST /predict and GET /openapi.json require an API key with a usage plan (or IAM auth by config); only GET /health, "
                "a MOCK that never reaches the function, is public."
                if serving.auth == "api_key"
                else "POST /predict and GET /openapi.json use IAM authorization; only GET /health, a MOCK that never reaches the function, is public.",
            ),
            ("AwsSolutions-COG4", "Clients are services holding API keys (or IAM principals), not Cognito users."),
            ("AwsSolutions-APIG6", execution_logging),
            ("NIST.800.53.R5-APIGWExecutionLoggingEnabled", execution_logging),
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


_OK = apigw.MethodResponse(status_code="200", response_models={"application/json": apigw.Model.EMPTY_MODEL})


def _static_json(body: str) -> apigw.MockIntegration:
    """API Gateway answers `body` itself (MOCK): no Lambda invocation, no share of its concurrency."""
    return apigw.MockIntegration(
        request_templates={"application/json": '{"statusCode": 200}'},
        integration_responses=[apigw.IntegrationResponse(status_code="200", response_templates={"application/json": body})],
    )
