"""ApiWebAcl: the WAF web ACL in front of API Gateway stages, with its logs.

One per environment by default (FrontDoor makes it); in classroom mode one per class and region
(ClassStack), shared by every student's API: a web ACL costs $5 a month plus $1 per rule whatever
it protects, so forty copies of the same rules cost forty times as much for no more protection.
"""

from __future__ import annotations

from aws_cdk import Aws, Fn, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

# What a class stack exports and each student's front door imports (exports are per account and region).
CLASS_WEB_ACL_EXPORT = "sagelab-class-web-acl-arn"
# Headers that carry credentials: never written to WAF logs.
REDACTED_HEADERS = ("x-api-key", "authorization", "x-amz-security-token")


class ApiWebAcl(Construct):
    """A regional web ACL: a rate limit, then AWS's IP-reputation, common and known-bad-inputs rule groups.

    Props:
        name_prefix: names the metrics and the log group (`aws-waf-logs-sagelab-<id>--waf-<stack id>`).
        rate_limit_per_5_minutes: requests one client IP may send per 5 minutes before it is blocked.
        per_api_rate_limit: count the rate per client IP *and* API host. A shared ACL needs it: a
            class behind one school NAT address would otherwise share one limit across all students.
        log_key, log_retention: the WAF log group's key and retention (the group is retained when
            the stack is deleted: it is the record of who called the API).

    Exposes `web_acl` and `web_acl_arn`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        rate_limit_per_5_minutes: int,
        per_api_rate_limit: bool = False,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self._prefix = name_prefix
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=self._visibility("web-acl"),
            rules=[
                self._rate_limit(rate_limit_per_5_minutes, per_api_rate_limit),
                self._managed(1, "AWSManagedRulesAmazonIpReputationList"),
                # Prediction bodies are legitimately larger than the common rule set's 8 KB body limit.
                self._managed(2, "AWSManagedRulesCommonRuleSet", overrides=["SizeRestrictions_BODY"]),
                self._managed(3, "AWSManagedRulesKnownBadInputsRuleSet"),
            ],
        )
        self.web_acl_arn = self.web_acl.attr_arn
        # WAF only logs to groups named aws-waf-logs-*.
        waf_logs = logs.LogGroup(
            self,
            "Logs",
            # Retained groups outlive their stack: a suffix from the stack id keeps a redeploy from colliding.
            log_group_name=Fn.join("-", ["aws-waf-logs", name_prefix, Fn.select(0, Fn.split("-", Fn.select(2, Fn.split("/", Aws.STACK_ID))))]),
            retention=log_retention,
            encryption_key=log_key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[waf_logs.log_group_arn],
            redacted_fields=[wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": name}) for name in REDACTED_HEADERS],
        )

    def _visibility(self, name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
        return wafv2.CfnWebACL.VisibilityConfigProperty(cloud_watch_metrics_enabled=True, metric_name=f"{self._prefix}-{name}", sampled_requests_enabled=True)

    def _rate_limit(self, limit: int, per_api: bool) -> wafv2.CfnWebACL.RuleProperty:
        keys = None
        if per_api:
            host = wafv2.CfnWebACL.RateLimitHeaderProperty(
                name="host", text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")]
            )
            keys = [wafv2.CfnWebACL.RateBasedStatementCustomKeyProperty(ip={}), wafv2.CfnWebACL.RateBasedStatementCustomKeyProperty(header=host)]
        return wafv2.CfnWebACL.RuleProperty(
            name="rate-limit-per-ip" + ("-and-api" if per_api else ""),
            priority=0,
            action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=limit, aggregate_key_type="CUSTOM_KEYS" if per_api else "IP", custom_keys=keys
                )
            ),
            visibility_config=self._visibility("rate-limit"),
        )

    def _managed(self, priority: int, name: str, overrides: list[str] | None = None) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS",
                    name=name,
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}))
                        for rule in overrides or []
                    ]
                    or None,
                )
            ),
            visibility_config=self._visibility(name),
        )


def associate_web_acl(scope: Construct, construct_id: str, stage_arn: str, web_acl_arn: str) -> wafv2.CfnWebACLAssociation:
    return wafv2.CfnWebACLAssociation(scope, construct_id, resource_arn=stage_arn, web_acl_arn=web_acl_arn)
