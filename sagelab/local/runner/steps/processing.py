"""A Processing step: inputs copied (or linked) from local S3 into `/opt/ml/processing/...`,
`ContainerEntrypoint` + `ContainerArguments` run with this Python, outputs copied back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.local_s3 import reads_inputs_only, unshare
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.call import StepCall
from sagelab.local.runner.steps.contract import container_path, job_name, map_container_arg, maybe_extract


def execute(call: StepCall) -> StepOutcome:
    run, name, arguments = call.run, call.name, call.arguments
    root = call.sandbox / "container"
    app = arguments.get("AppSpecification", {})
    entrypoint = list(app.get("ContainerEntrypoint") or [])
    if not entrypoint:
        raise StepFailed(name, "AppSpecification has no ContainerEntrypoint; the local runner runs script processors only")
    linked: list[Path] = []
    for processing_input in arguments.get("ProcessingInputs", []):
        s3_input = processing_input.get("S3Input")
        if s3_input is None:
            raise StepFailed(name, f"input {processing_input.get('InputName')!r} is not an S3Input")
        local = container_path(root, s3_input["LocalPath"])
        compressed = s3_input.get("S3CompressionType") == "Gzip"  # extracting writes into the folder: copies
        placed = run.s3.download(s3_input["S3Uri"], local, link=not compressed)
        linked.extend([] if compressed else placed)
        if not placed:
            raise StepFailed(name, f"input {processing_input.get('InputName')!r}: {s3_input['S3Uri']} has no objects (local {run.s3.path(s3_input['S3Uri'])})")
        maybe_extract(local, s3_input.get("S3CompressionType"))
    outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for output in outputs:
        container_path(root, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
    command = [run.processes.interpreter(part) for part in entrypoint[:1]] + [
        map_container_arg(root, str(a)) for a in entrypoint[1:] + list(app.get("ContainerArguments") or [])
    ]
    if not (command[0] == run.processes.python and len(command) > 1 and reads_inputs_only(root / command[1])):
        unshare(linked)
    environment = {**arguments.get("Environment", {}), **run.loopback.environment()}
    run.processes.execute(name, command, cwd=root, environment=environment)
    properties_outputs: dict[str, Any] = {}
    published = {}
    for output in outputs:
        local = container_path(root, output["S3Output"]["LocalPath"])
        run.s3.upload(local, output["S3Output"]["S3Uri"], link=True)  # the finished step's files: nothing writes them again
        properties_outputs[output["OutputName"]] = {
            "OutputName": output["OutputName"],
            "S3Output": {"S3Uri": output["S3Output"]["S3Uri"], "LocalPath": output["S3Output"]["LocalPath"]},
        }
        published[output["OutputName"]] = str(run.s3.path(output["S3Output"]["S3Uri"]))
    return StepOutcome(
        properties={
            "ProcessingJobName": job_name(arguments.get("ProcessingJobName"), name),
            "ProcessingJobStatus": "Completed",
            "ProcessingOutputConfig": {"Outputs": properties_outputs},
        },
        outputs=published,
    )
