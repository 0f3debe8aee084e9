"""A RegisterModel step: a version in the local model registry (`sagelab.local.registry`)."""

from __future__ import annotations

from collections.abc import Mapping

from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.call import StepCall


def execute(call: StepCall) -> StepOutcome:
    run, name, arguments = call.run, call.name, call.arguments
    containers = arguments.get("InferenceSpecification", {}).get("Containers", [])
    if len(containers) != 1:
        raise StepFailed(name, f"expected one inference container, found {len(containers)}")
    container = containers[0]
    model_uri = container["ModelDataUrl"]
    model_path = run.s3.path(model_uri)
    if not model_path.is_file():
        raise StepFailed(name, f"model artifact {model_uri} does not exist")
    metrics_uri = arguments.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
    metrics = run.s3.read_json(metrics_uri) if metrics_uri else {}
    package = run.registry.register(
        group=arguments["ModelPackageGroupName"],
        approval_status=arguments.get("ModelApprovalStatus", "PendingManualApproval"),
        model_data_url=model_uri,
        model_data_path=str(model_path),
        image=container.get("Image", ""),
        environment=container.get("Environment", {}),
        metrics_url=metrics_uri,
        metrics=metrics,
        execution_id=str(call.context.execution["PipelineExecutionId"]),
        description=arguments.get("ModelPackageDescription", ""),
        customer_metadata=arguments.get("CustomerMetadataProperties") or {},  # the registry stores them as strings
        drift_check_baselines={
            baseline.lower(): str(source["S3Uri"])
            for baseline, source in arguments.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).items()
            if isinstance(source, Mapping) and "S3Uri" in source
        },
    )
    run.log(f"   {name}: registered {package.group} version {package.version} ({package.approval_status})")
    registered = package.to_json()
    return StepOutcome(properties={"ModelPackageArn": registered["arn"]}, package=registered)
