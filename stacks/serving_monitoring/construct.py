"""ServingMonitoring: alarms on the front door and the endpoint, an alarm topic and a dashboard."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from sagelab.naming import ResourceNames
from stacks.model_endpoint.construct import VARIANT

FIVE_MINUTES = Duration.minutes(5)


ROLLBACK_ALARM = "EndpointServerErrors"


def alarm_to_topic(
    scope: Construct,
    alarm_id: str,
    *,
    metric: cloudwatch.Metric | cloudwatch.MathExpression,
    threshold: float,
    description: str,
    names: ResourceNames,
    topic: sns.ITopic,
    evaluation_periods: int = 1,
) -> cloudwatch.Alarm:
    """An environment's alarm as every one of ours is: named in its scope, at or over `threshold`,
    missing data not breaching, notifying the environment's topic."""
    alarm = metric.create_alarm(
        scope,
        alarm_id,
        alarm_name=names.name(alarm_id),
        alarm_description=description,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(actions.SnsAction(topic))
    return alarm


class ServingMonitoring(Construct):
    """Alarms: API 5xx, API latency p99, Lambda throttles, endpoint 5xx (also the blue/green
    rollback alarm), model latency p99. All notify `topic` (KMS-encrypted, TLS-only).

    Props:
        names: metric dimensions (endpoint name) and resource names.
        api, function: the front door's API and Lambda.
        key: encrypts the alarm topic.
        for_class: a student's environment: no dashboard of its own (the class has one) and only
            the alarm an automatic action uses (the rollback alarm, real-time endpoints only);
            every alarm costs $0.10 a month, and nobody reads a student's alarm topic.
        realtime: whether the endpoint runs on instances (blue/green deployments roll back).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        api: apigw.RestApi,
        function: lambda_.IFunction,
        key: kms.IKey,
        for_class: bool = False,
        realtime: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name=f"SageLab {names.environment} alarms", master_key=key, enforce_ssl=True)

        def endpoint_metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": names.endpoint, "VariantName": VARIANT},
                statistic=statistic,
                period=FIVE_MINUTES,
            )

        specs = [
            ("ApiServerErrors", api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"), 1, "The front door answered 5xx"),
            ("ApiLatencyP99", api.metric_latency(period=FIVE_MINUTES, statistic="p99"), 3000, "p99 latency of the front door over 3 s"),
            ("FunctionThrottles", function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"), 1, "The front-door function was throttled"),
            (ROLLBACK_ALARM, endpoint_metric("Invocation5XXErrors", "Sum"), 1, "The endpoint answered 5xx (also rolls back a blue/green deployment)"),
            ("ModelLatencyP99", endpoint_metric("ModelLatency", "p99"), 2_000_000, "p99 model latency over 2 s (microseconds)"),
        ]
        if for_class:
            specs = [spec for spec in specs if spec[0] == ROLLBACK_ALARM and realtime]
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for alarm_id, metric, threshold, description in specs:
            self.alarms[alarm_id] = alarm_to_topic(
                self,
                alarm_id,
                metric=metric,
                threshold=threshold,
                description=description,
                names=names,
                topic=self.topic,
                evaluation_periods=1 if "Errors" in alarm_id or "Throttles" in alarm_id else 3,
            )
        self.rollback_alarms: list[cloudwatch.IAlarm] = [self.alarms[ROLLBACK_ALARM]] if ROLLBACK_ALARM in self.alarms else []
        self.dashboard: cloudwatch.Dashboard | None = None
        if not for_class:
            self.dashboard = self._dashboard(names, api, function, endpoint_metric)

    def show_drift_check(self, metrics: dict[str, cloudwatch.Metric], alarms: list[cloudwatch.IAlarm]) -> None:
        """The drift check's metrics and alarms on the dashboard (stacks/drift_check/construct.py)."""
        if self.dashboard is None:
            return
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Drift check: violations and largest drift (PSI)", left=[metrics["Violations"]], right=[metrics["MaxDrift"], metrics["PredictionDrift"]]
            ),
            cloudwatch.GraphWidget(
                title="Drift check: captured rows and live quality", left=[metrics["CapturedRows"]], right=[metrics["LiveAccuracy"], metrics["LiveRmse"]]
            ),
            cloudwatch.AlarmStatusWidget(title="Drift check alarms", alarms=alarms),
        )

    def _dashboard(
        self, names: ResourceNames, api: apigw.RestApi, function: lambda_.IFunction, endpoint_metric: Callable[[str, str], cloudwatch.Metric]
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=names.name("serving"))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Front door requests",
                left=[api.metric_count(period=FIVE_MINUTES), api.metric_client_error(period=FIVE_MINUTES), api.metric_server_error(period=FIVE_MINUTES)],
            ),
            cloudwatch.GraphWidget(
                title="Front door latency (p50, p99)",
                left=[api.metric_latency(period=FIVE_MINUTES, statistic="p50"), api.metric_latency(period=FIVE_MINUTES, statistic="p99")],
            ),
            cloudwatch.GraphWidget(
                title="Function errors and throttles", left=[function.metric_errors(period=FIVE_MINUTES), function.metric_throttles(period=FIVE_MINUTES)]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint invocations",
                left=[endpoint_metric("Invocations", "Sum"), endpoint_metric("Invocation4XXErrors", "Sum"), endpoint_metric("Invocation5XXErrors", "Sum")],
            ),
            cloudwatch.GraphWidget(
                title="Model latency (p50, p99, microseconds)", left=[endpoint_metric("ModelLatency", "p50"), endpoint_metric("ModelLatency", "p99")]
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values())),
        )
        return dashboard
