"""The resume cache (`sagelab run --resume`): a cache-enabled step whose arguments and inputs did
not change is reused from an earlier run instead of run again."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sagelab.local.runner.errors import PipelineError
from sagelab.local.runner.local_s3 import LocalS3
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.contract import json_or_text


class StepCache:
    """Entries under `<workdir>/cache/<key>.json`."""

    def __init__(self, directory: Path, s3: LocalS3) -> None:
        self.directory = directory
        self.s3 = s3

    def key(self, name: str, step: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
        # SageMaker keys its cache on the step's arguments (output locations excluded); locally we
        # also hash the content of every input, so a changed file under the same URI is not reused.
        relevant = {
            k: v
            for k, v in arguments.items()
            if k
            in (
                "AppSpecification",
                "Environment",
                "ProcessingInputs",
                "AlgorithmSpecification",
                "HyperParameters",
                "InputDataConfig",
                "HyperParameterTuningJobConfig",
                "TrainingJobDefinition",
            )
        }
        digest = hashlib.sha256(json.dumps({"type": step["Type"], "name": name, "arguments": relevant}, sort_keys=True, default=str).encode())
        for uri in sorted(_input_uris(arguments)):
            for path, relative in self.s3.objects(uri):
                digest.update(relative.encode() + b"\0")
                with path.open("rb") as handle:  # a chunk at a time: a 137 MB dataset is not read into memory (same digest)
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
        return digest.hexdigest()

    def lookup(self, key: str, expire_after: str | None) -> tuple[StepOutcome, str | None] | None:
        """The stored outcome (marked cached) and the log of the run that computed it; None when
        there is none or it expired."""
        path = self.directory / f"{key}.json"
        if not path.exists():
            return None
        entry = json.loads(path.read_text())
        if expire_after and time.time() - entry["stored_at"] > _iso_duration_seconds(expire_after):
            return None
        # Entries written before the outcome was typed kept the runner's own keys (`_outputs`, ...)
        # among the properties; no SageMaker property starts with `_`.
        properties = {k: v for k, v in entry["properties"].items() if not k.startswith("_")}
        return StepOutcome(properties=properties, outputs=entry.get("outputs", {}), cached=True), entry.get("log")

    def store(self, key: str, outcome: StepOutcome, log: Path) -> None:
        path = self.directory / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"stored_at": time.time(), "properties": outcome.properties, "outputs": outcome.outputs, "log": str(log)}
        path.write_text(json.dumps(entry, default=str))


def reuse_log(log_dir: Path, name: str, original: str | None) -> None:
    """A reused step's log is the run's that computed it (as SageMaker shows a cached step's
    original job), so `pipeline logs` and the lab's training log still read it."""
    if original and Path(original).is_file():
        (log_dir / f"{name}.log").write_text(f"(reused from an earlier run: {original})\n{Path(original).read_text()}")


def _input_uris(arguments: Mapping[str, Any]) -> Iterable[str]:
    for processing_input in arguments.get("ProcessingInputs", []):
        if "S3Input" in processing_input:
            yield processing_input["S3Input"]["S3Uri"]
    for channel in arguments.get("InputDataConfig", []) or arguments.get("TrainingJobDefinition", {}).get("InputDataConfig", []):
        yield channel["DataSource"]["S3DataSource"]["S3Uri"]
    hyperparameters = arguments.get("HyperParameters") or arguments.get("TrainingJobDefinition", {}).get("StaticHyperParameters") or {}
    submit = json_or_text(hyperparameters.get("sagemaker_submit_directory"))
    if isinstance(submit, str) and submit.startswith("s3://"):
        yield submit


def _iso_duration_seconds(value: str) -> float:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value)
    if not match:
        raise PipelineError(f"CacheConfig ExpireAfter {value!r} is not an ISO 8601 duration like P30D or PT1H")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds
