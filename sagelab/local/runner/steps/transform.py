"""A Transform step: a batch transform through the local twin of the model's container
(`sagelab.local.containers`, as `sagelab serve` scores)."""

from __future__ import annotations

import tarfile

from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.call import StepCall
from sagelab.local.runner.steps.contract import job_name

# Batch transform sends at most this many lines per request (inference.py's MAX_ROWS).
TRANSFORM_RECORDS_PER_REQUEST = 1000


def execute(call: StepCall) -> StepOutcome:
    """A batch transform: each input file, split into lines, through the local twin of the
    model's container; `<file>.out` with one answer line per input line (AssembleWith Line)."""
    from sagelab.local.containers import ErrorAnswer, open_container

    run, name, arguments, sandbox = call.run, call.name, call.arguments, call.sandbox

    model_name = arguments["ModelName"]
    if model_name not in run.models:
        raise StepFailed(name, f"model {model_name!r} was not created in this run")
    container_spec = run.models[model_name]
    model_dir = sandbox / "model"
    archive = run.s3.path(container_spec["ModelDataUrl"])
    if not archive.is_file():
        raise StepFailed(name, f"model artifact {container_spec['ModelDataUrl']} does not exist")
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    container = open_container(str(container_spec.get("Image", "")), model_dir, container_spec.get("Environment") or {})
    transform_input = arguments["TransformInput"]
    content_type = transform_input.get("ContentType", "text/csv")
    output = arguments["TransformOutput"]
    accept = output.get("Accept", "text/csv")
    output_uri = output["S3OutputPath"].rstrip("/")
    inputs = run.s3.objects(transform_input["DataSource"]["S3DataSource"]["S3Uri"])
    if not inputs:
        raise StepFailed(name, f"transform input {transform_input['DataSource']['S3DataSource']['S3Uri']} has no objects")
    rows = 0
    for path, relative in inputs:
        lines = [line for line in path.read_text().splitlines() if line.strip()] if transform_input.get("SplitType") == "Line" else [path.read_text()]
        answers = []
        for start in range(0, len(lines), TRANSFORM_RECORDS_PER_REQUEST):
            body = "\n".join(lines[start : start + TRANSFORM_RECORDS_PER_REQUEST]).encode()
            try:
                answer, _ = container.invoke(body, content_type, accept)
            except ErrorAnswer as error:  # the container's error answer: SageMaker fails the job with it
                raise StepFailed(name, f"{relative} records {start + 1}..: {error}") from None
            answers.append(answer.decode().rstrip("\n"))
        target = run.s3.path(f"{output_uri}/{relative}.out")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(answers) + "\n")
        rows += len(lines)
    run.log(f"   {name}: {rows} record(s) through {model_name}")
    return StepOutcome(
        properties={
            "TransformJobName": job_name(arguments.get("TransformJobName"), name),
            "TransformJobStatus": "Completed",
            "TransformOutput": {"S3OutputPath": output_uri},
        },
        outputs={"predictions": str(run.s3.path(output_uri))},
    )
