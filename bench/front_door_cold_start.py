"""Cold start of the front-door Lambda: a fresh interpreter importing stacks/front_door/runtime/handler.py
and serving its first POST /predict (boto3 client, compiled schema; the SageMaker answer stubbed
with botocore's Stubber, so no network), against floors measured in the same run:
`python -c pass` and a fresh interpreter importing only boto3 and json.

    .venv/bin/python bench/front_door_cold_start.py [--repeat N]

The budget: import plus the first request's setup under 300 ms of work on top of `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, child_env, print_table, time_command

BUDGET_SECONDS = 0.300
BEFORE_COMMIT = "5b06d2f"  # the handler before issue 14 (X-Ray and the client built at import)

# Runs in the child: import the handler, then one POST /predict through the resolver.
FIRST_REQUEST = """
import io, json, os, sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import handler
imported = time.perf_counter()
from botocore.response import StreamingBody
from botocore.stub import Stubber
client = handler.runtime_client() if hasattr(handler, "runtime_client") else handler._runtime
answer = b'{"predictions": [{"label": "0"}]}'
stub = Stubber(client)
stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"})
stub.activate()
class Context:
    function_name, function_version, memory_limit_in_mb = "bench", "$LATEST", 512
    invoked_function_arn, aws_request_id = "arn:aws:lambda:us-east-1:000000000000:function:bench", "bench"
    def get_remaining_time_in_millis(self): return 29000
event = {"resource": "/predict", "path": "/predict", "httpMethod": "POST", "headers": {"content-type": "application/json"},
         "requestContext": {"requestId": "bench", "stage": "prod", "resourcePath": "/predict", "httpMethod": "POST"},
         "body": json.dumps({"instances": [[0.0] * 64]}), "isBase64Encoded": False}
response = handler.lambda_handler(event, Context())
assert response["statusCode"] == 200, response
done = time.perf_counter()
print(json.dumps({"import": imported - started, "first_request": done - imported}))
"""


def handler_dir(source: str, scratch: Path) -> Path:
    """A directory holding handler.py (and its request schema), as in the Lambda's /var/task."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "handler.py").write_text(source)
    (scratch / "request_schema.json").write_text((REPO_ROOT / "stacks/front_door/runtime/request_schema.json").read_text())
    return scratch


def in_process(task_dir: Path, env: dict[str, str], repeat: int) -> list[dict[str, float]]:
    results = []
    for _ in range(repeat):
        completed = subprocess.run([sys.executable, "-c", FIRST_REQUEST, str(task_dir)], env=env, capture_output=True, text=True, cwd=task_dir)
        if completed.returncode != 0:
            raise SystemExit(completed.stderr[-3000:])
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    env = child_env()
    # Fake credentials: the SageMaker call is stubbed, nothing leaves the machine.
    env.update({"ENDPOINT_NAME": "bench-endpoint", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    env["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    env.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", None)
    traced, untraced = {**env, "POWERTOOLS_TRACE_DISABLED": "false"}, {**env, "POWERTOOLS_TRACE_DISABLED": "true"}
    before_source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:stacks/front_door/runtime/handler.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    now_source = (REPO_ROOT / "stacks/front_door/runtime/handler.py").read_text()

    with tempfile.TemporaryDirectory(prefix="sagelab-cold-") as scratch:
        now_dir, before_dir = handler_dir(now_source, Path(scratch) / "now"), handler_dir(before_source, Path(scratch) / "before")
        import_only = "import sys, time; sys.path.insert(0, '.'); import handler"
        rows = {
            "python -c pass": time_command([sys.executable, "-c", "pass"], args.repeat),
            "import boto3, json (baseline)": time_command([sys.executable, "-c", "import boto3, json"], args.repeat),
            "handler import (trace off)": _timed(import_only, now_dir, untraced, args.repeat),
            "handler import + 1st request": _timed_script(now_dir, untraced, args.repeat),
            "  same, in-code tracing on": _timed_script(now_dir, traced, args.repeat),
            f"before ({BEFORE_COMMIT}) import + 1st": _timed_script(before_dir, traced, args.repeat),
        }
        print_table("Front-door cold start: fresh interpreters, wall time", "import boto3, json (baseline)", rows)
        parts = in_process(now_dir, untraced, args.repeat)
        before_parts = in_process(before_dir, traced, args.repeat)

    floor = statistics.median(rows["python -c pass"])
    work = statistics.median(rows["handler import + 1st request"]) - floor
    print("\nInside the child (median ms)        import   1st request   total")
    for name, samples in (("now (trace off)", parts), (f"before ({BEFORE_COMMIT})", before_parts)):
        imported = statistics.median(s["import"] for s in samples) * 1000
        first = statistics.median(s["first_request"] for s in samples) * 1000
        print(f"{name:<34} {imported:>7.0f} {first:>13.0f} {imported + first:>7.0f}")
    verdict = "within" if work <= BUDGET_SECONDS else "OVER"
    print(f"\nimport + first request, less `python -c pass`: {work * 1000:.0f} ms ({verdict} the {BUDGET_SECONDS * 1000:.0f} ms budget)")
    return 0 if work <= BUDGET_SECONDS else 1


def _timed(code: str, task_dir: Path, env: dict[str, str], repeat: int) -> list[float]:
    return _time_in(task_dir, env, [sys.executable, "-c", code], repeat)


def _timed_script(task_dir: Path, env: dict[str, str], repeat: int) -> list[float]:
    return _time_in(task_dir, env, [sys.executable, "-c", FIRST_REQUEST, str(task_dir)], repeat)


def _time_in(task_dir: Path, env: dict[str, str], command: list[str], repeat: int) -> list[float]:
    import time

    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=task_dir, env=env, capture_output=True, text=True)
        samples.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command[:2])} failed:\n{completed.stderr[-3000:]}")
    return samples


if __name__ == "__main__":
    raise SystemExit(main())
