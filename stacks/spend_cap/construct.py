"""SpendCap: a hard spending cap per student, metered in minutes from SageMaker's own events.

    SageMaker state-change events (notebooks, training/processing/transform/tuning/AutoML jobs,
    endpoints) ─► EventBridge rule ─┐
    schedule (every `reconcile_minutes`) ─────────┼─► enforcer Lambda ─► DynamoDB (points, state; PITR, TTL)
    `sagelab class lift` (lambda:InvokeFunction) ─┘        │
    own-account students' events ─► the class's bus ─┘     │   (own accounts: through the role it
                                  (stacks/spend_cap/link.py)│    assumes there, link.py)
        at warn_percent: SNS (student by filter, admins) ◄─┤
        at the cap: StopNotebookInstance, UpdateStack(serving, ModelPackageArn="") with the
        serving stack's deployment role, AttachRolePolicy(deny) on the student's platform roles

AWS Budgets (StudentGuardrails) stays as the billing truth; this cap acts within one event or one
reconciliation period instead of Budgets' 8-24 hours. The enforcer reaches only resources that
carry this class's `course` tag and are named like a student's: see `enforcer_statements`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from sagelab.costs import load_prices
from sagelab.naming import CLASS_ID
from sagelab.package_files import package_dir
from sagelab.pipeline_definition import CONTRACT_MODULE
from stacks.app.nag import acknowledge, acknowledge_policy_wildcards, acknowledge_tracing_grant
from stacks.lambda_runtime import LAMBDA_RUNTIME, contract_file, powertools_layer, staged_package
from stacks.naming import ACCOUNT_ID, PARTITION, REGION, ResourceArns
from stacks.sagemaker_log_groups.construct import allow_cloudwatch_logs
from stacks.spend_cap.runtime.metering import EVENT_KINDS

UNIT_DIR = Path(__file__).resolve().parent
# What the enforcer may not do while a student is capped: start anything that bills by the hour,
# or approve a model (an approval deploys an endpoint through the student's approval deployer).
DENIED_ACTIONS = [
    "sagemaker:CreateTrainingJob",
    "sagemaker:CreateProcessingJob",
    "sagemaker:CreateTransformJob",
    "sagemaker:CreateHyperParameterTuningJob",
    "sagemaker:CreateAutoMLJob",
    "sagemaker:CreateAutoMLJobV2",
    "sagemaker:CreateEndpoint",
    "sagemaker:UpdateEndpoint",
    "sagemaker:CreateNotebookInstance",
    "sagemaker:StartNotebookInstance",
    "sagemaker:StartPipelineExecution",
    "sagemaker:RetryPipelineExecution",
    "sagemaker:UpdateModelPackage",
]
COURSE_TAG = "course"
SERVERLESS_PRICE = "sagemaker_serverless"  # sagelab/prices.csv: USD per GB-second of inference
CLASS_NAMES = ResourceArns.of(CLASS_ID)


def enforcer_role_arn(account: str, region: str, partition: str = PARTITION) -> str:
    """The enforcer's role in the class account (named when the class has own-account students:
    their spend-cap roles trust it by ARN)."""
    return f"arn:{partition}:iam::{account}:role/{CLASS_NAMES.spend_cap_function_role(region)}"


def spend_bus_arn(account: str, region: str, partition: str = PARTITION) -> str:
    """The class's bus that own-account students' SageMaker events are forwarded to."""
    return f"arn:{partition}:events:{region}:{account}:event-bus/{CLASS_NAMES.spend_bus}"


def forwarder_role_arn(student: str, account: str, partition: str = PARTITION) -> str:
    return f"arn:{partition}:iam::{account}:role/{ResourceArns.of(student).spend_events_role}"


def student_role_arn(student: str, account: str, partition: str = PARTITION) -> str:
    return f"arn:{partition}:iam::{account}:role/{ResourceArns.of(student).spend_cap_role}"


def enforcement_statements(students: ResourceArns, course: str, deny_policy_arn: str) -> list[iam.PolicyStatement]:
    """What the enforcer does to students' resources in one account (the deploying one): read and
    list running work, stop a notebook, UpdateStack a serving stack with its own deployment role,
    attach or detach the deny. `students`: the class account's `ResourceArns.of("*")` (any
    student, narrowed by the course tag), or one own-account student's names in their account."""
    sagemaker_arn = ResourceArns.sagemaker_arn
    stack_arn = f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT_ID}:stack"
    role_arn = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role"
    of_this_class = {"StringEquals": {f"aws:ResourceTag/{COURSE_TAG}": course}}
    return [
        iam.PolicyStatement(
            sid="ListRunningWork",
            actions=[
                "sagemaker:ListNotebookInstances",
                "sagemaker:ListEndpoints",
                "sagemaker:ListTrainingJobs",
                "sagemaker:ListProcessingJobs",
                "sagemaker:ListTransformJobs",
            ],
            resources=["*"],
        ),
        # Serverless endpoints are charged from their ModelLatency (metering.serverless_charge).
        iam.PolicyStatement(sid="ReadServerlessUsage", actions=["cloudwatch:GetMetricStatistics"], resources=["*"]),
        iam.PolicyStatement(
            sid="PriceStudentWork",
            actions=[
                "sagemaker:DescribeNotebookInstance",
                "sagemaker:DescribeEndpoint",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeTransformJob",
            ],
            resources=[
                sagemaker_arn(f"notebook-instance/{students.pattern()}"),
                sagemaker_arn(f"endpoint/{students.pattern()}"),
                sagemaker_arn(f"endpoint-config/{students.pattern()}"),
                sagemaker_arn(f"training-job/{students.pattern()}"),
                sagemaker_arn(f"processing-job/{students.pattern()}"),
                sagemaker_arn(f"transform-job/{students.pattern()}"),
            ],
        ),
        iam.PolicyStatement(
            sid="StopStudentNotebooks",
            actions=["sagemaker:StopNotebookInstance"],
            resources=[sagemaker_arn(f"notebook-instance/{students.notebook}")],
            conditions=of_this_class,
        ),
        iam.PolicyStatement(
            sid="ReadStudentStacks",
            actions=["cloudformation:DescribeStacks", "cloudformation:DescribeStackResources"],
            resources=[f"{stack_arn}/{students.platform_stack}/*", f"{stack_arn}/{students.serving_stack}/*"],
        ),
        # Only with the serving stack's own deployment role and its previous template: the
        # same contract as the approval deployer's, which CloudFormation then runs.
        iam.PolicyStatement(
            sid="RemoveStudentEndpoints",
            actions=["cloudformation:UpdateStack"],
            resources=[f"{stack_arn}/{students.serving_stack}/*"],
            conditions={
                **of_this_class,
                "ArnLike": {"cloudformation:RoleArn": f"{role_arn}/{students.serving_stack}-*"},
                "Null": {"cloudformation:TemplateUrl": "true"},
            },
        ),
        iam.PolicyStatement(
            sid="PassStudentDeploymentRoles",
            actions=["iam:PassRole"],
            resources=[f"{role_arn}/{students.serving_stack}-*"],
            conditions={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com", f"aws:ResourceTag/{COURSE_TAG}": course}},
        ),
        iam.PolicyStatement(
            sid="DenyAndAllowStudentRoles",
            actions=["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            resources=[f"{role_arn}/{students.platform_stack}-*"],
            conditions={**of_this_class, "ArnEquals": {"iam:PolicyARN": deny_policy_arn}},
        ),
    ]


def capped_deny(scope: Construct, construct_id: str, description: str, name: str | None = None) -> iam.ManagedPolicy:
    """The deny attached to a capped student's roles (the class account's, or one in an own-account student's account)."""
    return iam.ManagedPolicy(
        scope,
        construct_id,
        managed_policy_name=name,
        description=description,
        statements=[iam.PolicyStatement(sid="SpendingCapReached", effect=iam.Effect.DENY, actions=DENIED_ACTIONS, resources=["*"])],
    )


def stage_enforcer(settings: Mapping[str, object]) -> Path:
    """The function's code: the enforcer package, the approval deployer's handler (whose `deploy`
    it calls), `sagelab/naming.py` (student names), `sagelab/aws_session.py` (its sessions in the
    students' accounts) and `class.json` (this class), shipped as they are, not copied into the enforcer."""
    files = {
        "enforcer/__init__.py": UNIT_DIR / "runtime" / "__init__.py",
        "enforcer/handler.py": UNIT_DIR / "runtime" / "handler.py",
        "enforcer/metering.py": UNIT_DIR / "runtime" / "metering.py",
        "stacks/__init__.py": package_dir("stacks") / "__init__.py",
        "stacks/approval_deployer/__init__.py": package_dir("stacks.approval_deployer") / "__init__.py",
        "stacks/approval_deployer/runtime/__init__.py": package_dir("stacks.approval_deployer.runtime") / "__init__.py",
        "stacks/approval_deployer/runtime/handler.py": package_dir("stacks.approval_deployer.runtime") / "handler.py",
        "sagelab/__init__.py": package_dir("sagelab") / "__init__.py",
        "sagelab/naming.py": package_dir("sagelab") / "naming.py",
        "sagelab/aws_session.py": package_dir("sagelab") / "aws_session.py",
        CONTRACT_MODULE: contract_file(),  # what the deployer's handler imports (docs/decisions/0018)
    }
    class_json = json.dumps(settings, sort_keys=True, indent=1)
    return staged_package("spend-cap", {**files, "class.json": class_json.encode()})


@dataclass(frozen=True)
class SpendCapSettings:
    """What the cap needs to know about the class (built from the config by the app builder)."""

    course: str
    students: tuple[str, ...]
    student_emails: Mapping[str, str]
    admin_emails: tuple[str, ...]
    cap_usd: float
    warn_percent: int
    reconcile_minutes: int
    allowed_instance_types: tuple[str, ...]
    own_accounts: Mapping[str, str] = field(default_factory=dict)  # student -> their own account (in `students` too)


class SpendCap(Construct):
    """Props (`settings`, a SpendCapSettings, and the stack's key and retention):
    settings.course: the class's `course` tag: the enforcer acts only on resources that carry it.
    students: student ids (of this region, in this account or their own), in roster order.
    own_accounts: student -> account, for students with an AWS account of their own: their
        events arrive on the class's bus (whose policy accepts exactly those accounts' forwarding
        roles), and the enforcer acts there through the role it may assume in each.
    student_emails: id -> address warned about that student (admins get every warning).
    admin_emails: the course admins.
    cap_usd: each student's monthly cap (SageMaker instance-hours as priced by sagelab/prices.csv).
    warn_percent: the share of the cap at which the student and admins are warned.
    reconcile_minutes: how often what is running is compared with the record.
    allowed_instance_types: every one must have a price (an unpriced type would be uncapped).
    model_package_parameter, deployment_role_output: the serving stack's parameter whose empty
        value removes the endpoint, and its output naming the role that may do that.
    key: encrypts the table, topic, queue and logs. log_retention: the function's log retention.

    Exposes `table`, `topic`, `function`, `deny_policy`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: SpendCapSettings,
        model_package_parameter: str,
        deployment_role_output: str,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        course, students, admin_emails, warn_percent = settings.course, settings.students, settings.admin_emails, settings.warn_percent
        if not students:
            raise ValueError("a spending cap needs at least one student")
        if not 0 < warn_percent < 100:
            raise ValueError(f"warn_percent must be between 1 and 99, not {warn_percent}")
        prices = {item.split(":", 1)[1]: price.usd for item, price in load_prices().items() if item.startswith("sagemaker_instance:")}
        unpriced = sorted(set(settings.allowed_instance_types) - set(prices))
        if unpriced:
            raise ValueError(
                f"allowed instance types {unpriced} have no price in sagelab/prices.csv (add rows sagemaker_instance:<type>): the cap could not meter them"
            )
        self.table = dynamodb.Table(
            self,
            "Spend",
            partition_key=dynamodb.Attribute(name="student", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="item", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            time_to_live_attribute="expires",
            removal_policy=RemovalPolicy.RETAIN,  # the record of what each student spent outlives the stack
        )
        acknowledge(
            self.table,
            ("NIST.800.53.R5-DynamoDBInBackupPlan", "Point-in-time recovery (35 days) covers the spend record; its points expire after 70 days by design."),
        )
        dead_letters = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True, retention_period=Duration.days(14)
        )
        acknowledge(
            dead_letters,
            ("AwsSolutions-SQS3", "This queue is itself the dead-letter queue of the cap's rules and function."),
            ("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue; events wait here for an operator."),
        )
        self.topic = sns.Topic(self, "Warnings", master_key=key, enforce_ssl=True, display_name=f"SageLab {course} spending")
        for address in admin_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(address, dead_letter_queue=dead_letters))
        for student in students:
            student_address = settings.student_emails.get(student)
            if student_address and student_address not in admin_emails:
                self.topic.add_subscription(
                    subscriptions.EmailSubscription(
                        student_address, filter_policy={"student": sns.SubscriptionFilter.string_filter(allowlist=[student])}, dead_letter_queue=dead_letters
                    )
                )
        self.deny_policy = capped_deny(
            self, "CappedDeny", f"SageLab {course}: attached to a student's roles at the spending cap, detached by `sagelab class lift`"
        )
        self.own_accounts = dict(settings.own_accounts)
        class_file = {
            "course": course,
            "cap_usd": settings.cap_usd,
            "warn_percent": warn_percent,
            "students": list(students),
            "prices": prices,
            "model_package_parameter": model_package_parameter,
            "deployment_role_output": deployment_role_output,
            "own_accounts": self.own_accounts,
            "serverless_usd_per_gb_second": load_prices()[SERVERLESS_PRICE].usd,
            "reconcile_minutes": settings.reconcile_minutes,
        }
        self.function = self._function(course, class_file, key, log_retention, dead_letters)
        if self.own_accounts:
            self._student_bus(course, dead_letters)
        events.Rule(
            self,
            "OnSageMakerState",
            description=f"SageLab {course}: meter SageMaker spend per student",
            event_pattern=events.EventPattern(source=["aws.sagemaker"], detail_type=sorted(EVENT_KINDS)),
            targets=[targets.LambdaFunction(self.function, dead_letter_queue=dead_letters, retry_attempts=8, max_event_age=Duration.hours(2))],
        )
        events.Rule(
            self,
            "Reconcile",
            description=f"SageLab {course}: compare the spend record with what is running",
            schedule=events.Schedule.rate(Duration.minutes(settings.reconcile_minutes)),
            targets=[
                targets.LambdaFunction(
                    self.function, dead_letter_queue=dead_letters, retry_attempts=2, max_event_age=Duration.minutes(settings.reconcile_minutes)
                )
            ],
        )

        # EventBridge (undeliverable events) and SNS (undeliverable warnings) put messages into the
        # encrypted queue: only this stack's cap rules and topic may use the key for it. (By name
        # pattern: the rules and topic use the key, so naming their ARNs would be a cycle.)
        stack = Stack.of(self)
        cap_arns = [
            f"arn:{PARTITION}:events:{REGION}:{ACCOUNT_ID}:rule/{stack.stack_name}-{construct_id}*",
            f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT_ID}:{stack.stack_name}-{construct_id}*",
        ]
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="SpendCapDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com"), iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"ArnLike": {"aws:SourceArn": cap_arns}},
            )
        )

    def _student_bus(self, course: str, dead_letters: sqs.IQueue) -> None:
        """Own-account students' accounts forward their SageMaker events here: the bus accepts
        PutEvents from exactly those accounts' forwarding roles, of SageMaker's state changes only."""
        region = Stack.of(self).region
        accounts = sorted(set(self.own_accounts.values()))
        self.bus = events.EventBus(
            self, "StudentEvents", event_bus_name=CLASS_NAMES.spend_bus, description=f"SageLab {course}: own-account students' SageMaker events"
        )
        self.bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OwnAccountStudentsSageMakerEvents",
                principals=[iam.AccountPrincipal(account) for account in accounts],
                actions=["events:PutEvents"],
                resources=[spend_bus_arn(ACCOUNT_ID, region)],
                conditions={
                    "StringEquals": {"events:source": "aws.sagemaker", "events:detail-type": sorted(EVENT_KINDS)},
                    "ArnEquals": {"aws:PrincipalArn": [forwarder_role_arn(student, account) for student, account in sorted(self.own_accounts.items())]},
                },
            )
        )
        events.Rule(
            self,
            "OnStudentAccountState",
            description=f"SageLab {course}: meter own-account students' SageMaker spend",
            event_bus=self.bus,
            event_pattern=events.EventPattern(source=["aws.sagemaker"], detail_type=sorted(EVENT_KINDS), account=accounts),
            targets=[targets.LambdaFunction(self.function, dead_letter_queue=dead_letters, retry_attempts=8, max_event_age=Duration.hours(2))],
        )

    def _function(
        self, course: str, class_file: Mapping[str, object], key: kms.IKey, log_retention: logs.RetentionDays, dead_letters: sqs.IQueue
    ) -> lambda_.Function:
        log_group_name = f"/aws/lambda/{Stack.of(self).stack_name}-spend-cap"
        allow_cloudwatch_logs(key, "CloudWatchLogsOfTheSpendCap", [log_group_name])
        function_logs = logs.LogGroup(
            self, "FunctionLogs", log_group_name=log_group_name, retention=log_retention, encryption_key=key, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(
            self,
            "FunctionRole",
            # Named only when own-account students' roles must trust it by ARN.
            role_name=CLASS_NAMES.spend_cap_function_role(Stack.of(self).region) if self.own_accounts else None,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com", conditions={"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT_ID}}),
            description=f"SageLab {course}: spending cap enforcer",
        )
        policy = iam.ManagedPolicy(self, "FunctionPolicy", roles=[role], statements=self.enforcer_statements(course, key, function_logs))
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: ENFORCER_WILDCARD_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )
        function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="enforcer.handler.lambda_handler",
            code=lambda_.Code.from_asset(str(stage_enforcer(class_file))),
            layers=[powertools_layer(self)],
            role=role,
            memory_size=256,
            timeout=Duration.minutes(2),  # a reconciliation lists the account's running work and judges every student
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            dead_letter_queue=dead_letters,
            environment={
                "TABLE_NAME": self.table.table_name,
                "TOPIC_ARN": self.topic.topic_arn,
                "DENY_POLICY_ARN": self.deny_policy.managed_policy_arn,
                "CLASS_ACCOUNT": ACCOUNT_ID,
                "PARTITION": PARTITION,
            },
            description=f"SageLab {course}: meters SageMaker spend per student and enforces the cap",
        )
        acknowledge(
            function,
            (
                "NIST.800.53.R5-LambdaConcurrency",
                "Reserved concurrency would come out of the account's pool (new accounts have 10); events are few and idempotent, so throttled ones retry.",
            ),
            (
                "NIST.800.53.R5-LambdaInsideVPC",
                "The function only calls AWS control-plane APIs (SageMaker, CloudFormation, IAM, DynamoDB, SNS); a VPC adds nothing.",
            ),
            (
                "AwsSolutions-L1",
                f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned in stacks/lambda_runtime.py.",
            ),
            (
                "Serverless-LambdaLatestVersion",
                f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned in stacks/lambda_runtime.py.",
            ),
        )
        acknowledge_tracing_grant(role, "spending cap")
        return function

    def enforcer_statements(self, course: str, key: kms.IKey, function_logs: logs.ILogGroup) -> list[iam.PolicyStatement]:
        """Everything the enforcer may do. In the class account, writes reach only resources tagged
        with this class's course and named like a student's (`ResourceArns.of("*")`), and the
        deny it attaches is this class's policy and no other; in an own-account student's account
        it acts only through the role it may assume there (exactly those roles, by ARN)."""
        statements = [
            iam.PolicyStatement(
                sid="KeepTheRecord", actions=["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"], resources=[self.table.table_arn]
            ),
            iam.PolicyStatement(sid="Warn", actions=["sns:Publish"], resources=[self.topic.topic_arn]),
            # The table and the topic are encrypted with the class key.
            iam.PolicyStatement(sid="UseClassKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]),
            *enforcement_statements(ResourceArns.of("*"), course, self.deny_policy.managed_policy_arn),
            iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn]),
        ]
        if self.own_accounts:
            statements.append(
                iam.PolicyStatement(
                    sid="ActInOwnAccounts",
                    actions=["sts:AssumeRole"],
                    resources=[student_role_arn(student, account) for student, account in sorted(self.own_accounts.items())],
                )
            )
        return statements


# Why each wildcard of the enforcer's policy is there (by statement id).
ENFORCER_WILDCARD_REASONS = {
    "ListRunningWork": "SageMaker's List* calls support no resource-level permission; the enforcer lists running work to catch missed events.",
    "ReadServerlessUsage": "CloudWatch's GetMetricStatistics supports no resource-level permission; it reads serverless endpoints' ModelLatency to charge them.",
    "PriceStudentWork": "Read-only Describe calls on resources named like a student's (sagelab-<id>...); job names end in run-specific suffixes.",
    "StopStudentNotebooks": "Notebook names are sagelab-<id>-notebook for every student of the class; the course tag condition limits it to this class.",
    "ReadStudentStacks": "Student stacks are named sagelab-<id>-platform|serving and end in a stack id CloudFormation assigns; read only.",
    "RemoveStudentEndpoints": "Serving stacks of any student of this class (course tag), only with that stack's generated deployment role and previous template.",
    "PassStudentDeploymentRoles": "Deployment roles get generated names after their serving stack; the course tag and PassedToService limit the pass.",
    "DenyAndAllowStudentRoles": "Platform roles get generated names after the student's platform stack; only this class's deny policy may be attached.",
    "WriteOwnLogs": "Log streams of the function's own log group are created by Lambda at run time.",
}
