"""ClassStack: what a class shares in the admin's account and one region (`sagelab-class-<region>`).

- one WAF web ACL that every student's API stage in this account and region is associated with
  (exported as `CLASS_WEB_ACL_EXPORT`; each student's front door imports it), rate-limited per
  client IP *and* API, so a class behind one school NAT address does not share one limit;
- one dashboard with every student's API and endpoint side by side, in place of one per student;
- in the class's home region, the student portal: the class user pool and each student's page
  (stacks/student_portal/).
- the spending cap of its students (stacks/spend_cap), when the class has one: of the students in
  this account and region, and of those in this region with an AWS account of their own (their
  events arrive on the cap's bus; a region with only those gets a class stack for the cap alone).

Per-student keys, buckets, roles and budgets stay in each student's own stacks: isolation is not
traded for cost. The WAF's log group has a key of the class's own (the students' keys are theirs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from sagelab.naming import CLASS_ID, PROJECT, ResourceNames
from sagelab.spend_cap import SPEND_CAP_FUNCTION_OUTPUT, class_stack_name
from stacks.api_web_acl.construct import CLASS_WEB_ACL_EXPORT, ApiWebAcl
from stacks.approval_deployer.parameters import MODEL_PACKAGE_PARAMETER
from stacks.model_endpoint.construct import VARIANT
from stacks.platform_stack import apply_tags
from stacks.sagemaker_log_groups.construct import allow_cloudwatch_logs
from stacks.serving_stack import DEPLOYMENT_ROLE_OUTPUT
from stacks.spend_cap.construct import SpendCap, SpendCapSettings
from stacks.student_portal.construct import PortalUser, StudentPortal

FIVE_MINUTES = Duration.minutes(5)


# The class-wide resources are a tenant of their own (`sagelab-class--*`), so that no student's or
# environment's scope reaches them, nor theirs a student's (`class` is a reserved id).
CLASS_NAMES = ResourceNames.of(CLASS_ID)


class ClassStack(Stack):
    """Props:
    account, region: where the class's shared-account students are.
    students: each shared-account student's id, in roster order (their dashboard; may be empty
        when the stack is there for own-account students' spending cap alone).
    rate_limit_per_5_minutes: per client IP and student API.
    log_retention: the WAF log group's retention.
    tags: the class's tags (project, course).
    portal_users: the roster, for the student portal (empty: no portal in this region).
    admin_emails: the course admins (the portal's `admins` group).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        account: str | None,
        region: str,
        students: Sequence[str],
        rate_limit_per_5_minutes: int,
        log_retention: logs.RetentionDays,
        tags: Mapping[str, str],
        portal_users: Sequence[PortalUser] = (),
        admin_emails: Sequence[str] = (),
        web_acl: bool = True,
        spend_cap: SpendCapSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=class_stack_name(region),
            env=Environment(account=account, region=region),
            description=(
                f"SageLab class: the web ACL and dashboard shared by {len(students)} students in {region}"
                if students
                else f"SageLab class: the spending cap of the students with their own account in {region}"
            ),
            **kwargs,
        )
        if not students and not (spend_cap and spend_cap.own_accounts):
            raise ValueError("a class stack needs at least one student")
        key = kms.Key(self, "LogKey", description="SageLab class: WAF logs", enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
        self.web_acl: ApiWebAcl | None = None
        if web_acl:
            allow_cloudwatch_logs(key, "CloudWatchLogsOfTheClassWaf", [f"aws-waf-logs-{CLASS_NAMES.name('waf')}-*"])
            self.web_acl = ApiWebAcl(
                self,
                "Waf",
                name_prefix=CLASS_NAMES.name("waf"),
                rate_limit_per_5_minutes=rate_limit_per_5_minutes,
                per_api_rate_limit=True,
                log_key=key,
                log_retention=log_retention,
            )
            CfnOutput(self, "WebAclArn", value=self.web_acl.web_acl_arn, export_name=CLASS_WEB_ACL_EXPORT, description="Associated with every student's API")
        self.spend_cap: SpendCap | None = None
        if spend_cap is not None:
            self.spend_cap = SpendCap(
                self,
                "SpendCap",
                settings=spend_cap,
                model_package_parameter=MODEL_PACKAGE_PARAMETER,
                deployment_role_output=DEPLOYMENT_ROLE_OUTPUT,
                key=key,
                log_retention=log_retention,
            )
            CfnOutput(self, SPEND_CAP_FUNCTION_OUTPUT, value=self.spend_cap.function.function_name, description="sagelab class lift invokes it")
        self.dashboard = self._dashboard([ResourceNames.of(student) for student in students]) if students else None
        self.portal = None
        if portal_users:
            self.portal = StudentPortal(
                self,
                "Portal",
                users=portal_users,
                admin_emails=admin_emails,
                course=tags.get("course", PROJECT),
                region=region,
                log_key=key,
                log_retention=log_retention,
                web_acl_arn=self.web_acl.web_acl_arn if self.web_acl else None,
            )
            CfnOutput(self, "PortalUrl", value=self.portal.page_url, description="The student portal: hand this address to the class")
        apply_tags(self, tags)

    def _dashboard(self, students: Sequence[ResourceNames]) -> cloudwatch.Dashboard:
        def per_student(title: str, metric_for: Any) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title, width=12, left=[metric_for(names) for names in students], legend_position=cloudwatch.LegendPosition.RIGHT
            )

        def api(metric: str, statistic: str) -> Any:
            return lambda names: cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=metric,
                dimensions_map={"ApiName": names.api},
                statistic=statistic,
                period=FIVE_MINUTES,
                label=names.environment,
            )

        def endpoint(metric: str, statistic: str) -> Any:
            return lambda names: cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=metric,
                dimensions_map={"EndpointName": names.endpoint, "VariantName": VARIANT},
                statistic=statistic,
                period=FIVE_MINUTES,
                label=names.environment,
            )

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=self.stack_name)
        dashboard.add_widgets(per_student("API requests per student", api("Count", "Sum")), per_student("API 5xx per student", api("5XXError", "Sum")))
        dashboard.add_widgets(
            per_student("Endpoint invocations per student", endpoint("Invocations", "Sum")),
            per_student("Endpoint 5xx per student", endpoint("Invocation5XXErrors", "Sum")),
        )
        return dashboard
