"""SpendCapLink: the spending cap's reach into an own-account student's account.

    the student's SageMaker state changes (default bus) ─► rule ─► the class's bus (class account)
                                                     role: events:PutEvents on that bus only
    the class's enforcer ─ sts:AssumeRole ─► `sagelab-<id>--spend-cap` role: only this student
        (stop their notebook, UpdateStack their serving stack with its deployment role, attach or
        detach the deny below to their platform roles, list and read their running work)
    `sagelab-<id>--capped-deny`: the class's deny, here (a managed policy attaches only in its own account)

One stack per own-account student (`sagelab-<id>--spend-cap`), beside their platform and serving
stacks and deployed with the class (it depends on the class stack, whose enforcer role the
trust names). Not in the bootstrap StackSet: that deploys one template to every account of an
organizational unit and knows no student, while this names exactly one student's resources and
the class's enforcer (docs/decisions/0016). The student templates do not change.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Environment, Stack, Tags
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.app.nag import acknowledge, acknowledge_policy_wildcards
from stacks.naming import ACCOUNT_ID, ResourceArns
from stacks.spend_cap.construct import capped_deny, enforcement_statements, enforcer_role_arn, spend_bus_arn
from stacks.spend_cap.runtime.metering import EVENT_KINDS

# Why each wildcard of the student role's policy is there (by statement id).
STUDENT_ROLE_WILDCARD_REASONS = {
    "ListRunningWork": "SageMaker's List* calls support no resource-level permission; the enforcer lists running work to catch missed events.",
    "ReadServerlessUsage": "CloudWatch's GetMetricStatistics supports no resource-level permission; it reads serverless endpoints' ModelLatency to charge them.",
    "PriceStudentWork": "Read-only Describe calls on this student's resources only (sagelab-<id>--*); job names end in run-specific suffixes.",
    "ReadStudentStacks": "This student's platform and serving stacks; their ARNs end in a stack id CloudFormation assigns; read only.",
    "RemoveStudentEndpoints": "This student's serving stack (its ARN ends in a generated id), only with its generated deployment role and previous template.",
    "PassStudentDeploymentRoles": "The serving stack's deployment role gets a generated name after the stack; PassedToService and the course tag limit it.",
    "DenyAndAllowStudentRoles": "This student's platform roles get generated names after their stack; only the capped-deny policy of this stack may be attached.",
}


class SpendCapLink(Construct):
    """Props:
    student: the student id; course: the class's `course` tag.
    class_account, class_region: where the class's enforcer and bus are (the bus is in the
        student's region: the class has a class stack in every region of its students).

    Exposes `forwarder_role`, `student_role`, `deny_policy`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, student: str, course: str, class_account: str, class_region: str) -> None:
        super().__init__(scope, construct_id)
        names = ResourceArns.of(student)
        bus_arn = spend_bus_arn(class_account, class_region)
        self.forwarder_role = iam.Role(
            self,
            "Forwarder",
            role_name=names.spend_events_role,
            description=f"SageLab {course}: forwards {student}'s SageMaker state changes to the class's bus",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}),
        )
        # Events the class's bus refused or could not take wait here (SQS-managed encryption:
        # EventBridge writes to it without a key of this stack's own to pay for).
        undelivered = sqs.Queue(self, "Undelivered", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True, retention_period=Duration.days(14))
        acknowledge(
            undelivered,
            ("AwsSolutions-SQS3", "This queue is itself the dead-letter queue of the forwarding rule."),
            ("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue; events wait here for an operator."),
        )
        events.Rule(
            self,
            "ForwardSageMakerState",
            description=f"SageLab {course}: {student}'s SageMaker state changes, for the class's spending cap",
            event_pattern=events.EventPattern(source=["aws.sagemaker"], detail_type=sorted(EVENT_KINDS)),
            # The target grants the role events:PutEvents on exactly the class's bus (its default policy).
            targets=[targets.EventBus(events.EventBus.from_event_bus_arn(self, "ClassBus", bus_arn), role=self.forwarder_role, dead_letter_queue=undelivered)],
        )
        acknowledge(
            self.forwarder_role,
            ("NIST.800.53.R5-IAMNoInlinePolicy", "aws-cdk-lib writes the event-bus target's grant (events:PutEvents on the class's bus only) inline."),
        )
        self.deny_policy = capped_deny(
            self,
            "CappedDeny",
            f"SageLab {course}: attached to {student}'s roles at the class's spending cap, detached by `sagelab class lift`",
            name=names.capped_deny_policy,
        )
        self.student_role = iam.Role(
            self,
            "Enforcement",
            role_name=names.spend_cap_role,
            description=f"SageLab {course}: the class's spending cap acts on {student} (and only them) through this role",
            assumed_by=iam.ArnPrincipal(enforcer_role_arn(class_account, class_region)),
        )
        policy = iam.ManagedPolicy(
            self,
            "EnforcementPolicy",
            roles=[self.student_role],
            statements=enforcement_statements(names, course, self.deny_policy.managed_policy_arn),
        )
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: STUDENT_ROLE_WILDCARD_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )
        acknowledge(
            self.student_role,
            ("AwsSolutions-IAM4", "No AWS managed policy: the one attached is this stack's own EnforcementPolicy."),
        )


class SpendCapLinkStack(Stack):
    """`sagelab-<id>--spend-cap`, in an own-account student's account: only composes SpendCapLink."""

    def __init__(
        self,
        scope: Construct,
        *,
        student: str,
        account: str | None,
        region: str,
        course: str,
        class_account: str,
        tags: Mapping[str, str],
    ) -> None:
        names = ResourceArns.of(student)
        super().__init__(
            scope,
            names.spend_cap_stack,
            stack_name=names.spend_cap_stack,
            env=Environment(account=account, region=region),
            description=f"SageLab class: {student}'s link to the class's spending cap (events out, the enforcer's role in)",
        )
        self.link = SpendCapLink(self, "SpendCap", student=student, course=course, class_account=class_account, class_region=region)
        for key, value in tags.items():
            Tags.of(self).add(key, value)
