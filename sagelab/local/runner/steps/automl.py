"""An AutoML step: a bounded local search over the same input (`sagelab.local.automl`), with the
outputs SageMaker's job gives; its candidates are answered on the loopback SageMaker API that
later processing steps reach with boto3."""

from __future__ import annotations

from pathlib import Path

from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.call import StepCall
from sagelab.local.runner.steps.contract import job_name as new_job_name


def execute(call: StepCall) -> StepOutcome:
    """An AutoML job: a bounded local search over the same input, with the outputs SageMaker's
    job gives (best candidate and its inference container, candidates for the leaderboard)."""
    from sagelab.local import automl

    run, name, arguments, sandbox = call.run, call.name, call.arguments, call.sandbox

    job_name = new_job_name(arguments.get("AutoMLJobName"), name)
    (source,) = arguments["InputDataConfig"][:1] or [None]
    if source is None:
        raise StepFailed(name, "InputDataConfig is empty")
    input_dir = sandbox / "input"
    uri = source["DataSource"]["S3DataSource"]["S3Uri"]
    if not run.s3.download(uri, input_dir):
        raise StepFailed(name, f"input {uri} has no objects")
    output_uri = f"{arguments['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job_name}"
    log = run.processes.step_log(name)
    try:
        result = automl.run_automl_job(arguments, input_dir, run.s3.path(output_uri), job_name, log, time_budget_s=run.automl_budget_s)
    except ValueError as error:
        raise StepFailed(name, str(error)) from None
    for container in result["BestCandidate"]["InferenceContainers"]:
        model_path = Path(container.pop("ModelDataPath"))
        container["ModelDataUrl"] = f"{output_uri}/{model_path.relative_to(run.s3.path(output_uri)).as_posix()}"
    run.loopback.api().add_automl_job(result)
    # The job's description as DescribeAutoMLJob gives it; the candidates are the loopback API's (ListCandidatesForAutoMLJob).
    return StepOutcome(
        properties={key: value for key, value in result.items() if key != "_candidates"},
        outputs={"best_candidate": result["BestCandidate"]["CandidateName"], "output": str(run.s3.path(output_uri))},
    )
