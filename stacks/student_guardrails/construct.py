"""StudentGuardrails: the cost guardrail of one environment — a monthly budget with email alerts."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_budgets as budgets
from constructs import Construct

ALERT_THRESHOLDS = (50, 80, 100)


class StudentGuardrails(Construct):
    """A monthly cost budget that emails the student and the admins at 50, 80 and 100 % of actual
    spend (and at 100 % of forecast). In a shared account the budget counts only this student's
    resources, through the `student` cost-allocation tag (activate it once in the Billing console);
    in a student's own account it counts the whole account.

    The other guardrails live where they act: idle auto-stop in NotebookEnvironment, the instance
    type allow-list in ExecutionRoles, serverless inference and scratch expiry in the config.

    Props:
        student_id: the tag value to filter on (None: the whole account).
        limit_usd: monthly limit.
        emails: who is alerted.
    """

    def __init__(self, scope: Construct, construct_id: str, *, budget_name: str, student_id: str | None, limit_usd: int, emails: Sequence[str]) -> None:
        super().__init__(scope, construct_id)
        if limit_usd <= 0:
            raise ValueError(f"limit_usd must be positive, got {limit_usd}")
        if not emails:
            raise ValueError("a budget needs at least one email to alert")
        subscribers = [budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=email) for email in emails]
        notifications = [
            budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type="ACTUAL", comparison_operator="GREATER_THAN", threshold=threshold, threshold_type="PERCENTAGE"
                ),
                subscribers=subscribers,
            )
            for threshold in ALERT_THRESHOLDS
        ]
        notifications.append(
            budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type="FORECASTED", comparison_operator="GREATER_THAN", threshold=100, threshold_type="PERCENTAGE"
                ),
                subscribers=subscribers,
            )
        )
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=limit_usd, unit="USD"),
                cost_filters={"TagKeyValue": [f"user:student${student_id}"]} if student_id else None,
            ),
            notifications_with_subscribers=notifications,
        )
