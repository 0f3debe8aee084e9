"""StudentPortal: the class's sign-in and the page where each student opens their own environment.

    Cognito user pool (no self sign-up; one user per roster row, username = student id, invited
    by email with a temporary password; course admins as `admin.N` in the `admins` group)
      └─ hosted sign-in (authorization code + PKCE) ─► the page's app client (writes no attribute)
    API Gateway (REST, the class's web ACL)
      GET /                                public: the page (no data)
      GET /students/{student}[/notebook]   user pool authorizer ─► Lambda (runtime/handler.py)
      GET /class                           user pool authorizer ─► Lambda (admins only, in code)

Which student a caller is comes from `cognito:username`, which only the admin side sets (the
CloudFormation user of the roster row); the page's client can write no attribute. The function may
presign and read only the class's own students' notebooks, pipelines, budgets and serving-stack
outputs (explicit ARNs per student, no wildcard over names), and for own-account students assume
only their `ResourceNames.portal_presign_role`; it has no data access.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from sagelab.naming import ResourceNames
from stacks.api_web_acl.construct import associate_web_acl
from stacks.app.nag import acknowledge, acknowledge_policy_wildcards, acknowledge_tracing_grant
from stacks.lambda_runtime import LAMBDA_RUNTIME, powertools_layer, staged_package
from stacks.naming import ACCOUNT_ID, PARTITION, REGION, URL_SUFFIX
from stacks.sagemaker_log_groups.construct import allow_cloudwatch_logs
from stacks.student_portal.accounts import ADMIN_GROUP, admin_username
from stacks.student_portal.runtime.handler import PortalStudent, encode_students

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# What the function ships beside its handler: `sagelab class report`'s reading of a student
# (class_report.student_status) and the modules it needs, so the page and the report are one code,
# and how SageLab makes a session (one parsed copy of botocore's data per execution environment).
SHIPPED_MODULES = ("sagelab/__init__.py", "sagelab/naming.py", "sagelab/aws_ops.py", "sagelab/class_report.py", "sagelab/aws_session.py")
STAGE = "prod"
# A managed policy holds at most 6,144 characters; each student adds about 380 (five ARNs): 12
# students a policy. A role takes 10 managed policies by default (20 when raised): synth counts
# them (sagelab/quotas.py, iam_managed_policies_per_role; one more holds its logs) and names the
# quota past 108 students.
STUDENTS_PER_POLICY = 12
TEMPORARY_PASSWORD_DAYS = 7


def staged_runtime() -> Path:
    """The function's code: the handler and page at the root, the shipped modules under sagelab/."""
    files = {name: RUNTIME_DIR / name for name in ("handler.py", "page.html")}
    return staged_package("student-portal", {**files, **{module: REPO_ROOT / module for module in SHIPPED_MODULES}})


@dataclass(frozen=True)
class PortalUser:
    """A roster row, as the portal needs it."""

    student_id: str
    email: str
    account_id: str | None  # None: the class account
    region: str


class StudentPortal(Construct):
    """Props:
        users: one per roster row (roster order); removing a row removes its user on the next deploy.
        admin_emails: course admins (users `admin.1`, ... in the `admins` group: they see the class report).
        region: the class's region (the stack's, as text: shared-account students elsewhere are named with theirs).
        course: the course tag, part of the hosted sign-in's domain prefix (unique per account and region).
        log_key, log_retention: the function's and the API's log groups.
        web_acl_arn: the class's web ACL, associated with the page's stage (None: none).

    Exposes `user_pool`, `client`, `domain`, `api`, `function`, `role`, `page_url`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        users: Sequence[PortalUser],
        admin_emails: Sequence[str],
        course: str,
        region: str,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        web_acl_arn: str | None,
    ) -> None:
        if not users:
            raise ValueError("a student portal needs at least one student")
        super().__init__(scope, construct_id)
        self.names = ResourceNames.of("class")
        self.user_pool = self._user_pool()
        self._users(users, admin_emails)
        # CloudFormation names these `<stack>-<logical id>-<suffix>`: the key admits that prefix only.
        allow_cloudwatch_logs(log_key, "CloudWatchLogsOfTheStudentPortal", [f"{Stack.of(self).stack_name}-*"])
        access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, encryption_key=log_key, removal_policy=RemovalPolicy.RETAIN)
        self.api = self._api(access_logs)
        # Built from the API's id, not its stage: the client's callback must not wait for the methods.
        self.page_url = f"https://{self.api.rest_api_id}.execute-api.{REGION}.{URL_SUFFIX}/{STAGE}/"
        self.client = self._client(self.page_url)
        slug = re.sub(r"[^a-z0-9-]+", "-", course.lower()).strip("-")[:20]
        self.domain = self.user_pool.add_domain("SignIn", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=self.names.name(f"{slug}-{ACCOUNT_ID}")))
        self.function = self._function(users, region, log_key, log_retention)
        self._routes()
        if web_acl_arn is not None:
            associate_web_acl(self, "WebAclAssociation", self.api.deployment_stage.stage_arn, web_acl_arn)
        self._acknowledge(web_acl_arn is not None)

    # -- who signs in ------------------------------------------------------------------------------
    def _user_pool(self) -> cognito.UserPool:
        return cognito.UserPool(
            self,
            "Users",
            user_pool_name=self.names.user_pool,
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(email=cognito.StandardAttribute(required=True, mutable=True)),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(TEMPORARY_PASSWORD_DAYS),
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            user_invitation=cognito.UserInvitationConfig(
                email_subject="Your SageLab class account",
                email_body=(
                    "You have a SageLab lab environment. Your user name is {username} and your temporary password is {####} "
                    f"(valid {TEMPORARY_PASSWORD_DAYS} days). Open the SageLab page your instructor shares and sign in with your "
                    "email address or user name; you will choose your own password."
                ),
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _users(self, users: Sequence[PortalUser], admin_emails: Sequence[str]) -> None:
        pool_id = self.user_pool.user_pool_id  # one jsii round trip, not one per user
        for user in users:
            self._user(pool_id, f"Student-{user.student_id}", user.student_id, user.email)
        admins = cognito.CfnUserPoolGroup(self, "Admins", user_pool_id=pool_id, group_name=ADMIN_GROUP, description="Course admins: they see the class report")
        for position, email in enumerate(admin_emails, start=1):
            username = admin_username(position)
            admin = self._user(pool_id, f"Admin{position}", username, email)
            attachment = cognito.CfnUserPoolUserToGroupAttachment(
                self, f"Admin{position}InGroup", user_pool_id=pool_id, group_name=ADMIN_GROUP, username=username
            )
            attachment.add_dependency(admin)
            attachment.add_dependency(admins)

    def _user(self, pool_id: str, construct_id: str, username: str, email: str) -> cognito.CfnUserPoolUser:
        return cognito.CfnUserPoolUser(
            self,
            construct_id,
            user_pool_id=pool_id,
            username=username,
            desired_delivery_mediums=["EMAIL"],
            user_attributes=[
                cognito.CfnUserPoolUser.AttributeTypeProperty(name="email", value=email),
                cognito.CfnUserPoolUser.AttributeTypeProperty(name="email_verified", value="true"),
            ],
        )

    def _client(self, page_url: str) -> cognito.UserPoolClient:
        return self.user_pool.add_client(
            "Page",
            user_pool_client_name=self.names.portal_api,
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[page_url],
                logout_urls=[page_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(12),
            read_attributes=cognito.ClientAttributes().with_standard_attributes(email=True, email_verified=True),
            # Who a student is (the user name) is never writable; neither is anything else.
            write_attributes=cognito.ClientAttributes(),
        )

    # -- the function ----------------------------------------------------------------------------
    def _function(self, users: Sequence[PortalUser], region: str, log_key: kms.IKey, log_retention: logs.RetentionDays) -> lambda_.Function:
        function_logs = logs.LogGroup(self, "FunctionLogs", retention=log_retention, encryption_key=log_key, removal_policy=RemovalPolicy.DESTROY)
        self.role = role = iam.Role(
            self,
            "FunctionRole",
            role_name=self.names.portal_function_role(region),  # own-account students' portal roles trust it by this name
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="SageLab class: student portal",
        )
        logs_policy = iam.ManagedPolicy(
            self,
            "WriteLogs",
            roles=[role],
            statements=[
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn])
            ],
        )
        del logs_policy
        shared = [user for user in users if user.account_id is None]
        for position in range(0, len(shared), STUDENTS_PER_POLICY):
            chunk = shared[position : position + STUDENTS_PER_POLICY]
            policy = iam.ManagedPolicy(self, f"Students{position // STUDENTS_PER_POLICY}", roles=[role], statements=student_statements(chunk))
            acknowledge_policy_wildcards(
                policy.node.default_child,  # type: ignore[arg-type]
                lambda _statement: (
                    "A CloudFormation stack ARN ends in an id CloudFormation generates; the stack name before it is the student's serving stack."
                ),
            )
        own = [user for user in users if user.account_id is not None]
        if own:
            iam.ManagedPolicy(
                self,
                "OwnAccountStudents",
                roles=[role],
                statements=[
                    iam.PolicyStatement(
                        sid="PresignThroughTheirAccount",
                        actions=["sts:AssumeRole"],
                        resources=[f"arn:{PARTITION}:iam::{user.account_id}:role/{ResourceNames.of(user.student_id).portal_presign_role}" for user in own],
                    )
                ],
            )
        function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(staged_runtime())),
            layers=[powertools_layer(self)],
            role=role,
            memory_size=256,
            timeout=Duration.seconds(25),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "STUDENTS": encode_students([PortalStudent(u.student_id, u.account_id, u.region) for u in users], region),
                "REGION": region,
                "CLIENT_ID": self.client.user_pool_client_id,
                "SIGN_IN_URL": self.domain.base_url(),
                "ADMIN_GROUP": ADMIN_GROUP,
                "POWERTOOLS_SERVICE_NAME": "sagelab-student-portal",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_TRACE_DISABLED": "true",
            },
            description="SageLab class: the student portal (each student's own notebook, runs and spend)",
        )
        why_sync = "API Gateway invokes the portal synchronously and shows its errors on the page; there is no event to dead-letter."
        same_runtime = f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned here."
        acknowledge(
            function,
            ("Serverless-LambdaDLQ", why_sync),
            ("NIST.800.53.R5-LambdaDLQ", why_sync),
            (
                "NIST.800.53.R5-LambdaInsideVPC",
                "The function only calls SageMaker, CloudFormation, Budgets and STS APIs; a VPC would add endpoints and no protection.",
            ),
            ("AwsSolutions-L1", same_runtime),
            ("Serverless-LambdaLatestVersion", same_runtime),
            (
                "NIST.800.53.R5-LambdaConcurrency",
                "No reservation: a new account's Lambda quota is 10 and Lambda keeps 100 unreserved, so any reservation fails a class's first deploy there (sagelab/quotas.py); the stage's throttling (20/s, burst 40) bounds the page.",
            ),
        )
        acknowledge_tracing_grant(role, "student portal")
        return function

    # -- the API ---------------------------------------------------------------------------------
    def _api(self, access_logs: logs.LogGroup) -> apigw.RestApi:
        return apigw.RestApi(
            self,
            "Api",
            rest_api_name=self.names.portal_api,
            description="SageLab class: the student portal",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                metrics_enabled=True,
                throttling_rate_limit=20,
                throttling_burst_limit=40,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True, response_length=True, status=True, user=True
                ),
            ),
        )

    def _routes(self) -> None:
        authorizer = apigw.CognitoUserPoolsAuthorizer(self, "SignedIn", cognito_user_pools=[self.user_pool])
        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False)
        signed_in = {"authorizer": authorizer, "authorization_type": apigw.AuthorizationType.COGNITO}
        self.api.root.add_method("GET", integration, authorization_type=apigw.AuthorizationType.NONE)
        student = self.api.root.add_resource("students").add_resource("{student}")
        student.add_method("GET", integration, **signed_in)  # type: ignore[arg-type]
        student.add_resource("notebook").add_method("GET", integration, **signed_in)  # type: ignore[arg-type]
        self.api.root.add_resource("class").add_method("GET", integration, **signed_in)  # type: ignore[arg-type]

    def _acknowledge(self, has_web_acl: bool) -> None:
        execution_logging = (
            "Execution logging needs the account-wide API Gateway CloudWatch role, which the class stack must not own; JSON access logs record every request."
        )
        public_page = "GET / serves the sign-in page itself (no data); every other method needs a user pool token (COGNITO authorizer)."
        rules = [
            ("AwsSolutions-APIG4", public_page),
            ("AwsSolutions-COG4", public_page),
            ("AwsSolutions-APIG6", execution_logging),
            ("NIST.800.53.R5-APIGWExecutionLoggingEnabled", execution_logging),
            (
                "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
                "Each answer is one student's live status or a one-time presigned URL; a cache would serve it stale or to no purpose.",
            ),
            ("NIST.800.53.R5-APIGWSSLEnabled", "Backend client certificates authenticate HTTP backends; this API's only backend is a Lambda integration."),
            ("AwsSolutions-APIG2", "Every method is a GET without a body; the path's student is checked against the caller's token in the function."),
        ]
        if not has_web_acl:
            reason = "The class has no shared web ACL (waf: off by config); the user pool authorizer and stage throttling protect the page."
            rules += [("AwsSolutions-APIG3", reason), ("NIST.800.53.R5-APIGWAssociatedWithWAF", reason)]
        acknowledge(self.api, *rules)
        plus = (
            "Threat protection needs the Plus feature plan (billed per active user); the pool has no self sign-up, a strong password policy and optional MFA."
        )
        mfa = "MFA is optional by design: a class of students must be able to sign in on the first day; each may turn on an authenticator app."
        acknowledge(
            self.user_pool,
            ("AwsSolutions-COG2", mfa),
            ("AwsSolutions-COG3", plus),
            ("AwsSolutions-COG8", plus),
        )


def student_statements(users: Sequence[PortalUser]) -> list[iam.PolicyStatement]:
    """What the portal may do for these students: presign and describe their notebook, describe
    their endpoint, list their pipeline's runs, read their serving stack's outputs and their
    budget (what class_report.student_status reads). Nothing else, no data."""

    def arn(service: str, region: str, resource: str) -> str:
        return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT_ID}:{resource}"

    names = [(ResourceNames.of(user.student_id), user.region) for user in users]
    return [
        iam.PolicyStatement(
            sid="PresignAndDescribeTheirNotebooks",
            actions=["sagemaker:CreatePresignedNotebookInstanceUrl", "sagemaker:DescribeNotebookInstance"],
            resources=[arn("sagemaker", region, f"notebook-instance/{n.notebook}") for n, region in names],
        ),
        iam.PolicyStatement(
            sid="DescribeTheirEndpoint",
            actions=["sagemaker:DescribeEndpoint"],
            resources=[arn("sagemaker", region, f"endpoint/{n.endpoint}") for n, region in names],
        ),
        iam.PolicyStatement(
            sid="ListTheirRuns",
            actions=["sagemaker:ListPipelineExecutions"],
            resources=[arn("sagemaker", region, f"pipeline/{n.pipeline}") for n, region in names],
        ),
        iam.PolicyStatement(
            sid="ReadTheirApiUrl",
            actions=["cloudformation:DescribeStacks"],
            resources=[arn("cloudformation", region, f"stack/{n.serving_stack}/*") for n, region in names],
        ),
        iam.PolicyStatement(sid="ReadTheirBudget", actions=["budgets:ViewBudget"], resources=[arn("budgets", "", f"budget/{n.budget}") for n, _ in names]),
    ]


class PortalPresignRole(Construct):
    """In an own-account student's account: the role the class portal's function assumes to presign
    this student's notebook and read their runs, budget and API URL. It trusts that one role.

    Props:
        user: the student (their account is the stack's).
        portal_role_arn: the class portal function's role, in the class account.

    Exposes `role`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, user: PortalUser, portal_role_arn: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            role_name=ResourceNames.of(user.student_id).portal_presign_role,
            assumed_by=iam.ArnPrincipal(portal_role_arn),
            description=f"SageLab {user.student_id}: the class portal presigns this student's notebook",
            max_session_duration=Duration.hours(1),
        )
        policy = iam.ManagedPolicy(self, "Policy", roles=[self.role], statements=student_statements([user]))
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda _statement: "A CloudFormation stack ARN ends in an id CloudFormation generates; the stack name before it is the student's serving stack.",
        )
