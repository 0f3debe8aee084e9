"""A Training step: channels in `/opt/ml/input/data/<channel>`, `SM_*` variables, hyperparameters
as arguments, the entry point from `sagemaker_submit_directory`, `model.tar.gz` written to
`<S3OutputPath>/<job>/output/` like SageMaker; metric definitions parsed from the log. A Training
step with the built-in K-Means image runs its local twin (`sagelab.local.builtin_kmeans`)."""

from __future__ import annotations

import itertools
import json
import os
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sagelab.local.containers import ContainerType, container_type
from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.local_s3 import reads_inputs_only
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.services import RunServices
from sagelab.local.runner.steps.call import StepCall
from sagelab.local.runner.steps.contract import job_name as new_job_name
from sagelab.local.runner.steps.contract import json_or_text, maybe_extract, write_tar_gz


def execute(call: StepCall) -> StepOutcome:
    return train(call.run, call.name, call.arguments, call.sandbox)


def container_for(image: str) -> ContainerType:
    """The local twin that runs `image`: `kmeans` for the built-in K-Means image (a Training step
    without a script runs `sagelab.local.builtin_kmeans`), `script` for a framework image running
    our scripts. The one place the runner picks a container by image; serving and batch transform
    pick theirs through the same `container_type`."""
    return container_type(image)


def train(run: RunServices, name: str, arguments: Mapping[str, Any], sandbox: Path, job_name: str | None = None) -> StepOutcome:
    """One training job (a Training step's, or one of a tuning job's, named `job_name`)."""
    job_name = job_name or new_job_name(arguments.get("TrainingJobName"), name)
    root = sandbox / "container"
    hyperparameters = {k: str(v) for k, v in (arguments.get("HyperParameters") or {}).items()}
    program = json_or_text(hyperparameters.get("sagemaker_program"))
    submit = json_or_text(hyperparameters.get("sagemaker_submit_directory"))
    image = str(arguments.get("AlgorithmSpecification", {}).get("TrainingImage", ""))
    if not program and container_for(image) == "kmeans":
        return _builtin_kmeans(run, name, arguments, root, job_name, hyperparameters)
    if not program or not submit:
        raise StepFailed(name, "training job has no sagemaker_program/sagemaker_submit_directory; the local runner runs script-mode training only")
    code_dir = root / "opt/ml/code"
    archive = run.s3.path(submit)
    if not archive.is_file():
        raise StepFailed(name, f"source archive {submit} not found (local {archive})")
    code_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(code_dir, filter="data")
    channels = _download_channels(run, name, arguments, root, link=reads_inputs_only(code_dir / str(program)))
    model_dir = root / "opt/ml/model"
    output_data_dir = root / "opt/ml/output/data"
    for directory in (model_dir, output_data_dir, root / "opt/ml/input/config"):
        directory.mkdir(parents=True, exist_ok=True)
    user_hps = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    resources = arguments.get("ResourceConfig") or arguments.get("HyperParameterTuningResourceConfig") or {}
    instance_count = int(resources.get("InstanceCount", 1))
    if instance_count > 1:
        run.log(f"   {name}: InstanceCount={instance_count}; locally all hosts' work runs in one process (algo-1)")
    (root / "opt/ml/input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "opt/ml/input/config/resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (root / "opt/ml/input/config/inputdataconfig.json").write_text(json.dumps({c: {"TrainingInputMode": "File"} for c in channels}))
    environment = {
        **(arguments.get("Environment") or {}),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_data_dir),
        "SM_OUTPUT_DIR": str(root / "opt/ml/output"),
        "SM_INPUT_DIR": str(root / "opt/ml/input"),
        "SM_INPUT_CONFIG_DIR": str(root / "opt/ml/input/config"),
        "SM_CHANNELS": json.dumps(channels),
        "SM_HPS": json.dumps({k: json_or_text(v) for k, v in user_hps.items()}),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_MODULE_NAME": Path(program).stem,
        "SM_USER_ENTRY_POINT": program,
        "SM_TRAINING_ENV": json.dumps(
            {"job_name": job_name, "hyperparameters": user_hps, "channel_input_dirs": {c: str(root / "opt/ml/input/data" / c) for c in channels}}
        ),
        **{f"SM_CHANNEL_{c.upper()}": str(root / "opt/ml/input/data" / c) for c in channels},
        **{f"SM_HP_{k.upper()}": v for k, v in user_hps.items()},
    }
    arguments_list = list(itertools.chain.from_iterable((f"--{k}", str(json_or_text(v))) for k, v in user_hps.items()))
    log_lines = run.processes.execute(name, [run.processes.python, program, *arguments_list], cwd=code_dir, environment=environment)
    metrics = _parse_metrics(arguments.get("AlgorithmSpecification", {}).get("MetricDefinitions", []), log_lines)
    return _publish_training(run, name, arguments, job_name, model_dir, output_data_dir, metrics)


def _download_channels(run: RunServices, name: str, arguments: Mapping[str, Any], root: Path, link: bool = False) -> list[str]:
    """Each channel into /opt/ml/input/data/<channel>; hard-linked only for a program that
    never writes its inputs (`reads_inputs_only`), so no write can reach local S3."""
    channels = []
    for channel in arguments.get("InputDataConfig", []):
        channel_name = channel["ChannelName"]
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        destination = root / "opt/ml/input/data" / channel_name
        if not run.s3.download(uri, destination, link=link and channel.get("CompressionType") != "Gzip"):
            raise StepFailed(name, f"channel {channel_name!r}: {uri} has no objects")
        maybe_extract(destination, channel.get("CompressionType"))
        channels.append(channel_name)
    return channels


def _publish_training(
    run: RunServices, name: str, arguments: Mapping[str, Any], job_name: str, model_dir: Path, output_data_dir: Path, metrics: Mapping[str, float]
) -> StepOutcome:
    """model.tar.gz and output.tar.gz where SageMaker writes them, and the job's properties."""
    output_path = arguments.get("OutputDataConfig", {}).get("S3OutputPath")
    if not output_path:
        raise StepFailed(name, "OutputDataConfig.S3OutputPath is missing")
    model_uri = f"{output_path.rstrip('/')}/{job_name}/output/model.tar.gz"
    write_tar_gz(model_dir, run.s3.path(model_uri))
    write_tar_gz(output_data_dir, run.s3.path(f"{output_path.rstrip('/')}/{job_name}/output/output.tar.gz"))
    return StepOutcome(
        properties={
            "TrainingJobName": job_name,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in metrics.items()],
        },
        outputs={"model": str(run.s3.path(model_uri))},
        metrics=dict(metrics),
    )


def _builtin_kmeans(run: RunServices, name: str, arguments: Mapping[str, Any], root: Path, job_name: str, hyperparameters: Mapping[str, str]) -> StepOutcome:
    """A Training step with the built-in K-Means image: its local twin, same hyperparameters,
    same artifact format (decision 0011)."""
    from sagelab.local import builtin_kmeans

    _download_channels(run, name, arguments, root)
    model_dir = root / "opt/ml/model"
    output_data_dir = root / "opt/ml/output/data"
    for directory in (model_dir, output_data_dir):
        directory.mkdir(parents=True, exist_ok=True)
    channels = {path.name: path for path in sorted((root / "opt/ml/input/data").iterdir())}
    log = run.processes.step_log(name)
    try:
        metrics = builtin_kmeans.train(channels, hyperparameters, model_dir, log)
    except ValueError as error:  # the built-in's own validation: bad hyperparameters or data
        raise StepFailed(name, str(error)) from None
    return _publish_training(run, name, arguments, job_name, model_dir, output_data_dir, metrics)


def _parse_metrics(definitions: list[Mapping[str, str]], lines: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        for line in lines:
            match = pattern.search(line)
            if match:
                try:
                    metrics[definition["Name"]] = float(match.group(1))
                except (IndexError, ValueError):
                    continue
    return metrics
