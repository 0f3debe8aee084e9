"""The lab notebook's one entry point: the same calls locally (`sagelab`'s runner and servers)
and on AWS (the deployed pipeline, registry, endpoint and front door).

    lab = open_lab()                 # SAGELAB_MODE=local (default) or aws
    run = lab.run(MaxDepth=4)        # start a pipeline run and wait for it
    lab.steps(run); lab.training_log(run); lab.evaluation(run); lab.plots(run)
    lab.approve(run); lab.predict(rows); lab.predict_endpoint(rows)
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline_steps import contract
from sagelab.naming import ResourceNames

MODES = ("local", "aws")


def open_lab(mode: str | None = None, **options: Any) -> LocalLab | AwsLab:
    """`SAGELAB_MODE` in the environment overrides `mode` (the notebook's first cell sets it)."""
    chosen = os.environ.get("SAGELAB_MODE") or mode or "local"
    if chosen not in MODES:
        raise ValueError(f"SAGELAB_MODE={chosen!r}; expected one of {', '.join(MODES)}")
    return LocalLab(**options) if chosen == "local" else AwsLab(**options)


def _post_json(url: str, payload: Any, api_key: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - the lab's own front door
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", **({"x-api-key": api_key} if api_key else {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class LocalLab:
    """Everything on this machine: `.sagelab/` is the account, the registry and the endpoint."""

    mode = "local"

    def __init__(self, workdir: str | Path = ".sagelab", env: str | None = None) -> None:
        from sagelab.settings import environment, load_project_config

        self.workdir = Path(workdir).resolve()
        self.env = environment(load_project_config(), env)
        self._serving: Any = None
        self._reported: set[Path] = set()  # capture files a drift report already covered
        self._servers: Any = None
        self._endpoint_client: Any = None  # sagemaker-runtime of the served endpoint, made once per serving
        self.api_key = "lab-local-key"

    def data(self) -> Any:
        import pandas as pd

        from sagelab.datasets import DIGITS_CSV

        return pd.read_csv(DIGITS_CSV)

    def run(self, quiet: bool = True, **parameters: Any) -> dict[str, Any]:
        from sagelab.local.environment import prepare
        from sagelab.local.runner import LocalPipelineRunner

        local_env = prepare(self.env, self.workdir)
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            if not quiet or not line.startswith("   ["):
                print(line, flush=True)

        runner = LocalPipelineRunner(local_env.definition, local_env.workdir, pipeline_name=local_env.pipeline_name, log=log)
        # As on AWS, where the deployed steps cache: a step whose arguments and inputs did not
        # change since an earlier run is reused (with that run's outputs and log), not run again.
        result = runner.run({k: str(v) for k, v in parameters.items()}, resume=True)
        summary = result.to_json()
        summary["log"] = lines
        return summary

    def steps(self, run: dict[str, Any]) -> Any:
        import pandas as pd

        return pd.DataFrame(run["steps"])[["name", "type", "status", "duration_s", "failure_reason"]]

    def training_log(self, run: dict[str, Any], step: str = "Train") -> str:
        path = Path(run["execution_dir"]) / "logs" / f"{step}.log"
        return path.read_text() if path.exists() else ""

    def evaluation(self, run: dict[str, Any]) -> dict[str, Any]:
        return json.loads((Path(run["evaluation_dir"]) / contract.EVALUATION_FILE_NAME).read_text())

    def plots(self, run: dict[str, Any]) -> list[Path]:
        return sorted(Path(run["evaluation_dir"]).glob("*.png"))

    def models(self) -> Any:
        import pandas as pd

        from sagelab.local.registry import LocalRegistry

        return pd.DataFrame(
            [
                {
                    "version": p.version,
                    "status": p.approval_status,
                    "algorithm": p.customer_metadata.get(contract.METADATA_ALGORITHM, contract.DEFAULT_ALGORITHM),
                    "accuracy": p.metrics.get("sagelab_summary", {}).get("metrics", {}).get("accuracy"),
                    "gate": (p.metrics.get("sagelab_summary", {}).get("gate") or {}).get("metric"),
                    "gate value": (p.metrics.get("sagelab_summary", {}).get("gate") or {}).get("value"),
                }
                for p in LocalRegistry(self.workdir).versions()
            ]
        )

    def approve(self, run: dict[str, Any]) -> str:
        from sagelab.local.registry import LocalRegistry

        registered = run.get("registered_model")
        if not registered:
            raise ValueError("this run registered no model (its metric did not pass the gate)")
        package = LocalRegistry(self.workdir).set_status(registered["group"], registered["version"], "Approved")
        self._stop_serving()  # the next prediction serves the newly approved version
        return package.arn

    def _front_door(self) -> tuple[Any, Any]:
        if self._servers is None:
            from sagelab.local.serve import serving

            # The lab captures every request (a few hundred rows are enough to see drift); the
            # environment's serving.data_capture_percent applies on AWS and under `sagelab serve`.
            self._serving = serving(self.workdir, self.api_key, endpoint_name=self.env.names.endpoint, capture_percent=100)
            self._servers = self._serving.__enter__()
        return self._servers

    def predict(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Through the front door: local gateway -> the Lambda handler -> local endpoint."""
        gateway, _ = self._front_door()
        status, body = _post_json(f"{gateway.url}/predict", {"instances": list(rows)}, self.api_key)
        if status != 200:
            raise RuntimeError(f"front door answered {status}: {body}")
        return list(body["predictions"])

    def predict_endpoint(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Straight to the endpoint with boto3's sagemaker-runtime, as an AWS client would."""
        from sagelab.aws_session import new_session

        _, endpoint = self._front_door()
        if self._endpoint_client is None:
            # The local endpoint verifies SigV4 by its own random credentials, as InvokeEndpoint needs the caller's.
            session = new_session(
                aws_access_key_id=endpoint.credentials.access_key, aws_secret_access_key=endpoint.credentials.secret_key, region_name="us-east-1"
            )
            self._endpoint_client = session.client("sagemaker-runtime", endpoint_url=endpoint.url)
        answer = self._endpoint_client.invoke_endpoint(
            EndpointName=self.env.names.endpoint, ContentType="application/json", Body=json.dumps({"instances": list(rows)})
        )
        return list(json.loads(answer["Body"].read())["predictions"])

    def cross_validate(self, run: dict[str, Any], folds: int = 5, **hyperparameters: Any) -> dict[str, Any]:
        """k-fold cross-validation on the run's training split, with train.py's own function."""
        outputs = next(step["outputs"] for step in run["steps"] if step["name"] == "Preprocess")
        return _cross_validate(Path(outputs["train"]), Path(outputs["spec"]), folds, hyperparameters)

    def upload(self, path: str | Path) -> str:
        """Your own CSV (or folder): copied into local S3; the URI to run the pipeline on."""
        from sagelab.local.environment import prepare, upload_data

        return upload_data(prepare(self.env, self.workdir), Path(path))

    def batch(self, path: str | Path, output: str | Path = "predictions.csv") -> Any:
        """Batch predictions: every row of a CSV file (or folder) scored by the approved model."""
        import pandas as pd

        from sagelab.batch import score_local

        score_local(self.workdir, Path(path), Path(output))
        return pd.read_csv(output)

    def drift_report(self) -> dict[str, Any]:
        """The drift check (the module the scheduled Lambda runs) over the requests captured since
        the previous report: violations, drift per feature, the plot's path."""
        from sagelab.local.monitor import baseline_dir, capture_files, run_check

        _, bucket = baseline_dir(self.workdir)
        files = [f for f in capture_files(self.workdir / "s3" / bucket) if f not in self._reported]
        self._reported.update(files)
        result = run_check(self.workdir, files=files, settings=_drift_settings(self.env))
        return {**result.report.to_json(), "report": str(result.report_path), "plot": str(result.plot_path)}

    def _stop_serving(self) -> None:
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
        self._serving = self._servers = self._endpoint_client = None

    def close(self) -> None:
        self._stop_serving()


def _drift_settings(env: Any) -> Any:
    from stacks.drift_check.runtime.comparison import DriftSettings

    serving = getattr(env, "serving", None)
    return DriftSettings(threshold=serving.drift_threshold) if serving is not None else DriftSettings()


class AwsLab:
    """The deployed environment (on the notebook instance, with its execution role)."""

    mode = "aws"

    def __init__(self, env: str | None = None, api_key: str | None = None, poll_seconds: float = 30) -> None:
        from sagelab.aws_ops import AwsOperations
        from sagelab.settings import environment, load_project_config

        self.ops = AwsOperations()
        # The notebook instance sets SAGELAB_ENV; elsewhere the CLI's rule: the config's first environment.
        self.env = self.ops.environment(env or os.environ.get("SAGELAB_ENV") or environment(load_project_config()).name)
        self.api_key = api_key or os.environ.get("SAGELAB_API_KEY")
        self.poll_seconds = poll_seconds

    def data(self) -> Any:
        import pandas as pd
        from sklearn.datasets import load_digits

        bunch = load_digits()
        frame = pd.DataFrame(bunch.data.astype(int), columns=[f"pixel_{i}" for i in range(bunch.data.shape[1])])
        frame["label"] = bunch.target
        return frame

    def run(self, quiet: bool = True, **parameters: Any) -> dict[str, Any]:
        arn = self.ops.start(self.env.pipeline, {k: str(v) for k, v in parameters.items()})
        print(f"started {arn}", flush=True)
        while True:
            status = self.ops.status(arn)
            if status["status"] in ("Succeeded", "Failed", "Stopped"):
                return status
            if not quiet:
                print(", ".join(f"{s['name']}: {s['status']}" for s in status["steps"]), flush=True)
            time.sleep(self.poll_seconds)

    def steps(self, run: dict[str, Any]) -> Any:
        import pandas as pd

        return pd.DataFrame(self.ops.status(run["execution_arn"])["steps"])

    def training_log(self, run: dict[str, Any], step: str = "Train") -> str:
        return "\n".join(line for line in self.ops.logs_of(run["execution_arn"]) if line.startswith(f"[{step}]"))

    def _evaluation_uri(self, run: dict[str, Any]) -> str:
        # The chain that ran has one Evaluate step: Evaluate, KMeansEvaluate, AutopilotEvaluate, ...
        evaluate = next(s for s in self.ops.status(run["execution_arn"])["steps"] if s["name"].endswith("Evaluate") and s.get("job"))
        job = self.ops.sagemaker.describe_processing_job(ProcessingJobName=evaluate["job"][1])
        return str(next(o["S3Output"]["S3Uri"] for o in job["ProcessingOutputConfig"]["Outputs"] if o["OutputName"] == "evaluation"))

    def evaluation(self, run: dict[str, Any]) -> dict[str, Any]:
        bucket, _, key = self._evaluation_uri(run)[5:].partition("/")
        return json.loads(self.ops.client("s3").get_object(Bucket=bucket, Key=f"{key}/{contract.EVALUATION_FILE_NAME}")["Body"].read())

    def plots(self, run: dict[str, Any]) -> list[Path]:
        bucket, _, key = self._evaluation_uri(run)[5:].partition("/")
        paths = []
        for name in ("confusion_matrix.png", "roc_curve.png"):
            target = Path(f"/tmp/{name}")  # noqa: S108 - notebook scratch
            self.ops.client("s3").download_file(bucket, f"{key}/{name}", str(target))
            paths.append(target)
        return paths

    def models(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.ops.models(self.env.model_package_group))

    def approve(self, run: dict[str, Any]) -> str:
        latest = self.ops.models(self.env.model_package_group)[-1]
        return self.ops.approve(self.env.model_package_group, int(latest["version"]))

    def predict(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        if not self.env.api_url:
            raise RuntimeError("the serving stack is not deployed (no ApiUrl output)")
        status, body = _post_json(f"{self.env.api_url.rstrip('/')}/predict", {"instances": list(rows)}, self.api_key)
        if status != 200:
            raise RuntimeError(f"front door answered {status}: {body}")
        return list(body["predictions"])

    def drift_report(self) -> dict[str, Any]:
        """On AWS the check runs on its schedule and its reports sit beside the captured requests,
        which describe API clients' data: the notebook's role cannot read them (decision 0013)."""
        return {
            "violations": [],
            "note": "On AWS the drift check runs every serving.drift_check_interval_hours; its reports (data-capture/reports/) are for the "
            "environment's operators, not the notebook, and its alarms notify the environment's topic.",
        }

    def predict_endpoint(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        answer = self.ops.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=ResourceNames.of(self.env.name).endpoint, ContentType="application/json", Body=json.dumps({"instances": list(rows)})
        )
        return list(json.loads(answer["Body"].read())["predictions"])

    def cross_validate(self, run: dict[str, Any], folds: int = 5, **hyperparameters: Any) -> dict[str, Any]:
        """Downloads the run's training split and feature spec, then cross-validates here."""
        import tempfile

        from sagelab.aws_ops import paged

        preprocess = next(s for s in self.ops.status(run["execution_arn"])["steps"] if s["name"] == "Preprocess")
        job = self.ops.sagemaker.describe_processing_job(ProcessingJobName=preprocess["job"][1])
        outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in job["ProcessingOutputConfig"]["Outputs"]}
        scratch = Path(tempfile.mkdtemp(prefix="sagelab-cv-"))
        s3 = self.ops.client("s3")
        for name in ("train", "spec"):
            bucket, _, key = outputs[name][5:].partition("/")
            for item in paged(s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=key):
                target = scratch / name / Path(item["Key"]).name
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
        return _cross_validate(scratch / "train", scratch / "spec", folds, hyperparameters)

    def upload(self, path: str | Path) -> str:
        """Your own CSV: uploaded to this environment's data bucket; the URI to run the pipeline on."""
        source = Path(path)
        bucket = self.ops.platform_outputs(self.env.name)["DataBucketName"]
        key = f"uploads/{source.stem}/{source.name}"
        self.ops.client("s3").upload_file(str(source), bucket, key)
        return f"s3://{bucket}/uploads/{source.stem}/"

    def batch(self, path: str | Path, output: str | Path = "predictions.csv") -> Any:
        """Batch predictions: a SageMaker batch transform job over the uploaded rows (headerless
        CSV) with the approved model; returns the job and where its predictions will be."""
        from sagelab.batch import start_transform

        return start_transform(self.ops, self.env.name, self.upload(path))

    def close(self) -> None:
        return None


def _cross_validate(train_dir: Path, spec_dir: Path, folds: int, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """k-fold cross-validation on a run's training split, with train.py's own function."""
    from pipeline_steps import train
    from pipeline_steps.preprocess import FeatureSpec

    spec = FeatureSpec.load(spec_dir)
    features, target = train.load_split(train_dir, "train")
    return train.cross_validate(spec, train.Hyperparameters(cv_folds=folds, **hyperparameters), features, target)
