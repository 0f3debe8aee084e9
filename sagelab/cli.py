"""`sagelab`: run the pipeline locally, operate a deployed environment, serve and call models.

    sagelab definition [--env NAME] [--config FILE]          the definition as deployed (placeholders kept)
    sagelab run [--data PATH] [--param Name=Value ...] [--resume] [--json] [--fresh-processes]
    sagelab models list [--group GROUP] [--json]
    sagelab models approve GROUP VERSION [--status STATUS]
    sagelab pipeline start [--param Name=Value ...]
    sagelab pipeline status [EXECUTION] [--json]
    sagelab pipeline logs [EXECUTION] [--follow]
    sagelab batch --input PATH|s3://PREFIX [--output FILE] [--instance-type TYPE]
    sagelab serve [--port N] [--endpoint-port M] [--api-key-file PATH] [--group GROUP] [--version N] [--config FILE]
    sagelab monitor [--json] [--labels FILE] [--hours H]              captured requests against the served version's baseline
    sagelab predict --url URL [--api-key-file PATH | --iam [--region R]] --file rows.csv|rows.json [--timeout S]
    sagelab class report --roster roster.csv [--output class-report.csv] [--html PAGE] [--student-role ROLE]
    sagelab class stop --roster roster.csv [--student-role ROLE]
    sagelab class portal --roster roster.csv [--port N]      the student portal on 127.0.0.1 (sign-in stand-in)
    sagelab synth-summary [CDK_OUT]                           stacks, resources, cdk-nag findings
    sagelab demo [--cdk PATH] [CDK_ARGS ...]                  synth, local run, serve + real requests (`make demo`)
    sagelab --version

Every command that works on local files takes --workdir DIR (default .sagelab/). `models`,
`pipeline` and `batch` act on the local work directory unless --aws is given (then on the deployed
environment --env, with --profile/--region); --env defaults to the config's first environment
(`dev` in cdk.json) everywhere.

Exit codes: 0 success; 1 the pipeline run failed (a Fail step or a failed step), a predict request
got an HTTP error, a class command could not reach some students, or synth-summary found
unacknowledged cdk-nag findings; 2 bad usage or input (one line on stderr, no stack trace);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline_steps import contract
from sagelab.aws_ops import DEFAULT_STUDENT_ROLE, OperationError
from sagelab.cloud_assembly import AssemblyError, assembly_stacks
from sagelab.config import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user; printed as one line, exit code 2."""


def _environment(args: argparse.Namespace) -> Any:
    from sagelab.settings import environment, load_project_config

    try:
        return environment(load_project_config(getattr(args, "config", None)), getattr(args, "env", None))
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None


def _env_name(args: argparse.Namespace) -> str:
    """--env, or the config's first environment: the same default for local and --aws commands."""
    return str(args.env or _environment(args).name)


# -- definition ---------------------------------------------------------------------------------
def cmd_definition(args: argparse.Namespace) -> int:
    from sagelab.pipeline_definition import build_definition

    env = _environment(args)
    print(json.dumps(build_definition(env.pipeline), indent=2, sort_keys=True))
    return EXIT_OK


# -- run ----------------------------------------------------------------------------------------
def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r}: expected Name=Value")
        params[name] = value
    return params


def cmd_run(args: argparse.Namespace) -> int:
    from sagelab.local.environment import prepare, upload_data
    from sagelab.local.runner import LocalPipelineRunner, PipelineError

    params = _parse_params(args.param or [])
    env = _environment(args)
    stream = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=stream, flush=True)

    started = time.monotonic()
    local_env = prepare(env, Path(args.workdir))
    if args.data:
        try:
            params["InputDataUri"] = upload_data(local_env, Path(args.data))
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
        log(f"uploaded {args.data} -> {params['InputDataUri']}")
    try:
        runner = LocalPipelineRunner(
            local_env.definition, local_env.workdir, pipeline_name=local_env.pipeline_name, log=log, fresh_processes=args.fresh_processes
        )
        result = runner.run(params, resume=args.resume)
    except PipelineError as error:
        raise UsageError(str(error)) from None
    elapsed = time.monotonic() - started
    summary = result.to_json()
    summary["wall_time_s"] = round(elapsed, 2)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_run_summary(summary)
    return EXIT_OK if result.status == "Succeeded" else EXIT_FAILED


def _print_run_summary(summary: dict[str, Any]) -> None:
    print()
    print(f"execution {summary['execution_id']}: {summary['status']} in {summary['wall_time_s']}s")
    skipped = [step for step in summary["steps"] if step["status"] == "Skipped"]
    for step in summary["steps"]:
        if step["status"] == "Skipped":
            continue  # the other algorithms' branches and the gate's untaken side; counted below
        duration = "" if step["duration_s"] is None else f"{step['duration_s']:.1f}s"
        print(f"  {step['name']:<36} {step['type']:<14} {step['status']:<10} {duration}")
    if skipped:
        print(f"  ({len(skipped)} steps of branches not taken skipped: Algorithm={summary['parameters'].get('Algorithm', '?')})")
    metric = summary.get("metric")
    if metric:
        print(f"gate: {metric['metric']} {metric['value']} {metric['comparison']} {metric['threshold']} -> {'pass' if metric['result'] else 'fail'}")
    registered = summary.get("registered_model")
    if registered:
        print(f"registered: {registered['group']} version {registered['version']} ({registered['approval_status']}) {registered['model_data_path']}")
    if summary.get("evaluation_dir"):
        print(f"evaluation report and plots: {summary['evaluation_dir']}")
    if summary.get("failure_reason"):
        print(f"failure: {summary['failure_reason']}")


# -- models -------------------------------------------------------------------------------------
def cmd_models_list(args: argparse.Namespace) -> int:
    from sagelab.local.registry import LocalRegistry, RegistryError

    if args.aws:
        ops = _aws(args)
        group = args.group or ops.environment(_env_name(args)).model_package_group
        rows_aws = ops.models(group)
        if args.json:
            print(json.dumps(rows_aws, indent=2))
        else:
            for row in rows_aws:
                print(f"{row['group']:<24} {row['version']:>7}  {row['status']:<22} {row['created']}")
        return EXIT_OK

    try:
        packages = LocalRegistry(Path(args.workdir)).versions(args.group)
    except RegistryError as error:
        raise UsageError(str(error)) from None
    rows = []
    for package in packages:
        summary = package.metrics.get("sagelab_summary", {})
        rows.append(
            {
                "group": package.group,
                "version": package.version,
                "status": package.approval_status,
                "created": package.created,
                # Versions registered before decision 0011 carry no metadata: they are XGBoost's.
                "algorithm": package.customer_metadata.get(contract.METADATA_ALGORITHM, contract.DEFAULT_ALGORITHM),
                "gate": summary.get("gate"),
                "metrics": summary.get("metrics", {}),
                "arn": package.arn,
                "model_data_url": package.model_data_url,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no model packages in {Path(args.workdir) / 'registry'}; run `sagelab run` first")
        return EXIT_OK
    print(f"{'group':<24} {'version':>7}  {'status':<22} {'algorithm':<10} {'gate metric':<22} created")
    for row in rows:
        # The metric its gate judged (accuracy, rmse, silhouette, ...); older versions: accuracy.
        gate = row["gate"] or {"metric": "accuracy", "value": row["metrics"].get("accuracy")}
        judged = f"{gate['metric']} {gate['value']:.4f}" if isinstance(gate.get("value"), (int, float)) else ""
        print(f"{row['group']:<24} {row['version']:>7}  {row['status']:<22} {row['algorithm']:<10} {judged:<22} {row['created']}")
    return EXIT_OK


def cmd_models_approve(args: argparse.Namespace) -> int:
    from sagelab.local.registry import LocalRegistry, RegistryError

    if args.aws:
        arn = _aws(args).approve(args.group, args.version, args.status)
        print(f"{args.group} version {args.version}: {args.status} ({arn})")
        return EXIT_OK

    try:
        package = LocalRegistry(Path(args.workdir)).set_status(args.group, args.version, args.status)
    except RegistryError as error:
        raise UsageError(str(error)) from None
    print(f"{package.group} version {package.version}: {package.approval_status}")
    return EXIT_OK


# -- operating a deployed environment (or the local work directory with --local) -----------------
def _aws(args: argparse.Namespace) -> Any:
    from sagelab.aws_ops import AwsOperations, OperationError
    from sagelab.aws_session import new_session

    try:
        session = new_session(profile_name=args.profile, region_name=args.region)
        return AwsOperations(session, endpoint_url=args.endpoint_url)
    except Exception as error:
        raise OperationError(str(error)) from None


def _latest_local_execution(workdir: Path) -> Path:
    executions = sorted((workdir / "executions").glob("*/execution.json"), key=lambda p: p.stat().st_mtime) if (workdir / "executions").exists() else []
    if not executions:
        raise UsageError(f"no local executions in {workdir}; run `sagelab run` (or `sagelab pipeline start --local`) first")
    return executions[-1].parent


def cmd_pipeline_start(args: argparse.Namespace) -> int:
    params = _parse_params(args.param or [])
    if not args.aws:
        return cmd_run(
            argparse.Namespace(
                workdir=args.workdir, data=None, param=args.param or [], resume=False, json=False, config=args.config, env=args.env, fresh_processes=False
            )
        )
    ops = _aws(args)
    env = ops.environment(_env_name(args))
    arn = ops.start(env.pipeline, params)
    print(f"started {arn}")
    print("follow it: sagelab pipeline status   |   sagelab pipeline logs --follow")
    return EXIT_OK


def cmd_pipeline_status(args: argparse.Namespace) -> int:
    if not args.aws:
        directory = Path(args.workdir) / "executions" / args.execution if args.execution else _latest_local_execution(Path(args.workdir))
        if not (directory / "execution.json").exists():
            raise UsageError(f"no local execution {args.execution!r} in {args.workdir}")
        status = json.loads((directory / "execution.json").read_text())
        rows = [(s["name"], s["status"], s.get("failure_reason")) for s in status["steps"]]
        header = f"execution {status['execution_id']}: {status['status']}"
    else:
        ops = _aws(args)
        env = ops.environment(_env_name(args))
        status = ops.status(args.execution or ops.latest_execution(env.pipeline))
        rows = [(s["name"], s["status"], s.get("failure_reason")) for s in status["steps"]]
        header = f"execution {status['execution_arn']}: {status['status']}"
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return EXIT_OK
    print(header)
    for name, step_status, reason in rows:
        print(f"  {name:<28} {step_status:<12} {reason or ''}")
    return EXIT_OK


def cmd_pipeline_logs(args: argparse.Namespace) -> int:
    if not args.aws:
        directory = Path(args.workdir) / "executions" / args.execution if args.execution else _latest_local_execution(Path(args.workdir))
        for log in sorted((directory / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime):
            for line in log.read_text().splitlines():
                print(f"[{log.stem}] {line}")
        return EXIT_OK
    ops = _aws(args)
    env = ops.environment(_env_name(args))
    arn = args.execution or ops.latest_execution(env.pipeline)
    lines = ops.follow(arn) if args.follow else ops.logs_of(arn)
    for line in lines:
        print(line, flush=True)
    return EXIT_OK


# -- batch ---------------------------------------------------------------------------------------------
def cmd_batch(args: argparse.Namespace) -> int:
    from sagelab.batch import score_local, start_transform
    from sagelab.local.registry import RegistryError
    from sagelab.local.serve import ServeError

    if args.aws:
        result = start_transform(_aws(args), _env_name(args), args.input, args.instance_type)
        print(f"started batch transform {result['job']} with {result['model_package']}; predictions will be in {result['output']}")
        return EXIT_OK
    try:
        result = score_local(Path(args.workdir), Path(args.input), Path(args.output or "predictions.csv"))
    except (ServeError, RegistryError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    print(f"scored {result['rows']} rows with {result['model']} -> {result['output']}")
    return EXIT_OK


# -- classroom ---------------------------------------------------------------------------------------
def _roster(args: argparse.Namespace) -> Any:
    from sagelab.roster import read_roster

    return read_roster(args.roster)


def cmd_class_report(args: argparse.Namespace) -> int:
    import csv
    import datetime as dt

    from sagelab.aws_ops import REPORT_COLUMNS, ClassroomOperations
    from sagelab.class_report import STATUS_COLUMNS, add_status, write_html

    students = _roster(args)
    classroom = ClassroomOperations(_aws(args), student_role=args.student_role)
    rows = classroom.report(students)
    add_status(classroom, students, rows, dt.datetime.now(dt.UTC).date())
    columns = [*REPORT_COLUMNS, *STATUS_COLUMNS]
    output = Path(args.output)
    with output.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    page = Path(args.html) if args.html else output.with_suffix(".html")
    write_html(rows, columns, page, f"SageLab class report: {len(rows)} students", dt.datetime.now(dt.UTC))
    deployed = sum(1 for row in rows if row["status"] == "deployed")
    unreachable = f", {len(classroom.unreachable)} unreachable ({', '.join(classroom.unreachable)})" if classroom.unreachable else ""
    print(f"wrote {output} and {page}: {len(rows)} students, {deployed} deployed{unreachable}")
    return EXIT_FAILED if classroom.unreachable else EXIT_OK


def cmd_class_stop(args: argparse.Namespace) -> int:
    from sagelab.aws_ops import ClassroomOperations

    classroom = ClassroomOperations(_aws(args), student_role=args.student_role)
    for line in classroom.stop(_roster(args)):
        print(line)
    return EXIT_FAILED if classroom.unreachable else EXIT_OK


# -- serve / predict ------------------------------------------------------------------------------------
DEFAULT_GATEWAY_PORT, DEFAULT_ENDPOINT_PORT = 8080, 8081


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from sagelab.api_key import COMMAND_LINE_REFUSAL, ENV_VAR, ApiKeyError, key_for_server
    from sagelab.local.registry import RegistryError
    from sagelab.local.serve import ServeError, serving

    if args.api_key is not None:
        raise UsageError(COMMAND_LINE_REFUSAL)
    try:
        api_key, key_file = key_for_server(args.api_key_file, Path(args.workdir))
    except ApiKeyError as error:
        raise UsageError(str(error)) from None
    capture_percent = _environment(args).serving.data_capture_percent
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    try:
        with serving(
            Path(args.workdir),
            api_key,
            port=args.port,
            endpoint_port=args.endpoint_port,
            group=args.group,
            version=args.version,
            capture_percent=capture_percent,
        ) as (gateway, endpoint):
            served = endpoint.served
            assert served is not None
            print(f"serving {served.package.group} version {served.package.version} ({served.package.approval_status})", flush=True)
            print(f"gateway   {gateway.url}   POST /predict and GET /openapi.json (x-api-key), GET /health", flush=True)
            print(f"endpoint  {endpoint.url}   GET /ping, POST /invocations, POST /endpoints/<name>/invocations (SigV4 by this run's key)", flush=True)
            where = f"in {key_file}" if key_file else f"from ${ENV_VAR}"
            print(f"api key   {where}; both servers listen on 127.0.0.1 only and answer Host 127.0.0.1 or localhost", flush=True)
            print(f"capture   {capture_percent}% of requests (serving.data_capture_percent); check them with `sagelab monitor`", flush=True)
            key_option = f" --api-key-file {key_file}" if key_file else ""
            print(f"try:      sagelab predict --url {gateway.url}{key_option} --file rows.csv   (Ctrl-C stops)", flush=True)
            stop.wait()
    except (ServeError, RegistryError) as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot listen: {error} (choose other ports with --port/--endpoint-port)") from None
    print("stopped", flush=True)
    return EXIT_OK


def read_rows(path: Path) -> dict[str, Any]:
    """rows.json ({"instances": ...} or a list) or rows.csv (a header row names the columns)."""
    import csv

    if not path.is_file():
        raise UsageError(f"--file {path}: no such file")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            payload = json.loads(text)
        except ValueError as error:
            raise UsageError(f"--file {path}: not valid JSON ({error})") from None
        return payload if isinstance(payload, dict) else {"instances": payload}
    rows = [row for row in csv.reader(text.splitlines()) if row]
    if not rows:
        raise UsageError(f"--file {path}: no rows")

    from sagelab.batch import csv_cell

    first = [csv_cell(cell) for cell in rows[0]]
    if any(isinstance(cell, str) for cell in first):  # a header: send records by column name
        return {"instances": [dict(zip(rows[0], (csv_cell(c) for c in row), strict=False)) for row in rows[1:]]}
    return {"instances": [[csv_cell(c) for c in row] for row in rows]}


def cmd_predict(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    payload = read_rows(Path(args.file))
    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"--url {args.url!r}: expected an http:// or https:// URL")
    from sagelab.api_key import COMMAND_LINE_REFUSAL, ApiKeyError, key_for_client

    if args.api_key is not None:
        raise UsageError(COMMAND_LINE_REFUSAL)
    if args.iam and args.api_key_file:
        raise UsageError("--iam and --api-key-file are exclusive: an API with IAM auth takes a SigV4 signature, one with API keys takes x-api-key")
    try:
        api_key = None if args.iam else key_for_client(args.api_key_file)
    except ApiKeyError as error:
        raise UsageError(str(error)) from None
    url = args.url.rstrip("/") + "/predict"
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if args.iam:
        headers = sigv4_headers(url, body, headers, region=args.region)
    elif api_key:
        headers["x-api-key"] = api_key
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310 - the user's URL
            print(response.read().decode())
            return EXIT_OK
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {error.read().decode(errors='replace')}", file=sys.stderr)
        return EXIT_FAILED
    except urllib.error.URLError as error:
        raise UsageError(f"cannot reach {args.url}: {error.reason}") from None


def sigv4_headers(url: str, body: bytes, headers: dict[str, str], region: str | None = None) -> dict[str, str]:
    """`headers` plus a SigV4 signature (service execute-api) from the standard credential chain
    (environment, shared files, SSO, instance role), as API Gateway's IAM authorization expects."""
    import re

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    session = Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise UsageError("--iam: no AWS credentials found (set AWS_PROFILE, run `aws sso login`, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    from_url = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    region = region or (from_url.group(1) if from_url else None) or session.get_config_variable("region") or "us-east-1"
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


# -- synth summary ------------------------------------------------------------------------------------
def synth_summary(cdk_out: Path) -> dict[str, Any]:
    stacks = assembly_stacks(cdk_out)
    resources = sum(len(stack.template().get("Resources", {})) for stack in stacks)
    acknowledged = unacknowledged = 0
    # The app's report, and in classroom mode each student template environment's (where the
    # students' resources are built and checked): cdk.out/student-templates/<shape>/.
    for report_path in sorted(cdk_out.rglob("validation-report.json")):
        report = json.loads(report_path.read_text())
        for plugin in report.get("pluginReports", []):
            acknowledged += sum(len(v.get("violatingConstructs", [])) for v in plugin.get("suppressedViolations", []))
            unacknowledged += sum(len(v.get("violatingConstructs", [])) for v in plugin.get("violations", []))
    return {"stacks": len(stacks), "resources": resources, "acknowledged_findings": acknowledged, "unacknowledged_findings": unacknowledged}


def cmd_synth_summary(args: argparse.Namespace) -> int:
    try:
        summary = synth_summary(Path(args.cdk_out))
    except AssemblyError as error:
        raise UsageError(str(error)) from None
    print(
        f"synth: {summary['stacks']} stacks, {summary['resources']} resources, "
        f"{summary['acknowledged_findings']} acknowledged cdk-nag findings, {summary['unacknowledged_findings']} unacknowledged"
    )
    return EXIT_OK if summary["unacknowledged_findings"] == 0 else EXIT_FAILED


# -- demo -------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    cdk = args.cdk or "cdk"
    print("== 1/3 synthesize every stack with cdk-nag (cdk synth) ==", flush=True)
    synth = subprocess.run([cdk, "synth", "--quiet", *args.cdk_args], check=False)
    if synth.returncode != 0:
        print("synth failed; see the findings above", file=sys.stderr)
        return EXIT_FAILED
    cmd_synth_summary(argparse.Namespace(cdk_out="cdk.out"))
    print("\n== 2/3 run the pipeline locally on the bundled digits (sagelab run) ==", flush=True)
    run_args = argparse.Namespace(workdir=args.workdir, data=None, param=[], resume=False, json=False, config=None, env=None, fresh_processes=False)
    code = cmd_run(run_args)
    if code != EXIT_OK:
        return code
    print("\n== 3/3 approve the new version, serve it, and call the front door (sagelab serve) ==", flush=True)
    _demo_serving(Path(args.workdir))
    templates = sorted(str(stack.template_file) for stack in assembly_stacks(Path("cdk.out")))
    print("\n== where things are ==")
    print(f"templates:   {', '.join(templates)}")
    print("nag report:  cdk.out/validation-report.json")
    print(f"runs:        {Path(args.workdir) / 'executions'}  (per-step sandboxes, execution.json)")
    print(f"metrics:     {Path(args.workdir)}/s3/*/models/evaluations/<execution>/evaluation/  (evaluation.json, confusion_matrix.png, roc_curve.png)")
    print(f"registry:    {Path(args.workdir) / 'registry'}  (sagelab models list)")
    print(
        f"serve again: sagelab serve   |   call it: sagelab predict --url http://127.0.0.1:8080 --api-key-file {Path(args.workdir) / 'api-key'} --file rows.csv"
    )
    print("algorithms:  sagelab run --param Algorithm=kmeans | autopilot  (README: Choosing an algorithm)")
    return EXIT_OK


def _demo_serving(workdir: Path) -> None:
    import csv
    import logging
    import os
    import secrets
    import urllib.error
    import urllib.request

    from sagelab.datasets import DIGITS_CSV
    from sagelab.local.registry import LocalRegistry
    from sagelab.local.serve import serving

    registry = LocalRegistry(workdir)
    latest = max(registry.versions(), key=lambda p: (p.created, p.version))
    registry.set_status(latest.group, latest.version, "Approved")
    print(f"approved {latest.group} version {latest.version}")
    with DIGITS_CSV.open() as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = [[float(v) for v in row] for _, row in zip(range(5), reader, strict=False)]
    features, labels = [row[:-1] for row in rows], [str(int(row[-1])) for row in rows]
    api_key = f"demo-{secrets.token_hex(6)}"
    # The demo prints each answer itself; the endpoint's and the function's logs of the refused
    # requests (CloudWatch's on AWS, shown by `sagelab serve`) would only interleave with it.
    logging.getLogger("sagelab.endpoint.container").setLevel(logging.ERROR)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    with serving(workdir, api_key) as (gateway, endpoint):
        print(f"gateway {gateway.url} -> same Lambda handler -> local endpoint {endpoint.url}")
        cases = [
            ("5 digits, with the key", {"x-api-key": api_key}, json.dumps({"instances": features})),
            ("no API key", {}, json.dumps({"instances": features[:1]})),
            ("wrong row width", {"x-api-key": api_key}, json.dumps({"instances": [[1, 2, 3]]})),
            ("strings in a row", {"x-api-key": api_key}, json.dumps({"instances": [["a", "b"]]})),
            ("not JSON", {"x-api-key": api_key}, "hello"),
        ]
        for title, headers, body in cases:
            request = urllib.request.Request(  # noqa: S310 - the local gateway's http:// URL
                f"{gateway.url}/predict", data=body.encode(), headers={"Content-Type": "application/json", **headers}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local URL
                    status, text = response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                status, text = error.code, error.read().decode()
            if status == 200:
                predicted = [p["label"] for p in json.loads(text)["predictions"]]
                print(f"  POST /predict  {title:<24} -> {status}  labels {predicted} (true {labels})")
            else:
                print(f"  POST /predict  {title:<24} -> {status}  {text}")


# -- parser -----------------------------------------------------------------------------------------
# Options several commands share are declared once, on parent parsers (argparse `parents=`).
DEFAULT_WORKDIR = ".sagelab"


def _shared_options() -> dict[str, argparse.ArgumentParser]:
    def parent() -> argparse.ArgumentParser:
        return argparse.ArgumentParser(add_help=False)

    workdir = parent()
    workdir.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"local work directory: buckets, executions, registry (default {DEFAULT_WORKDIR}/)")
    environment = parent()
    environment.add_argument("--env", help="environment name from the config (default: its first environment, `dev` in cdk.json)")
    environment.add_argument("--config", help="YAML config file, as `cdk synth -c config=FILE`")
    aws = parent()
    aws.add_argument("--profile", help="AWS profile (default: the usual AWS settings)")
    aws.add_argument("--region", help="AWS region (default: the usual AWS settings)")
    aws.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # tests: moto in server mode
    # One rule for every command that can act on either: the local work directory unless --aws.
    target = parent()
    where = target.add_mutually_exclusive_group()
    where.add_argument("--aws", action="store_true", help="the deployed environment (--env) instead of the local work directory")
    where.add_argument("--local", action="store_false", dest="aws", help="the local work directory (the default)")
    student_role = parent()
    student_role.add_argument(
        "--student-role", default=DEFAULT_STUDENT_ROLE, help="role to assume in the account of a student whose roster row has account_id (default: %(default)s)"
    )
    return {"workdir": workdir, "environment": environment, "aws": aws, "target": target, "student_role": student_role}


Subparsers = Any  # argparse's _SubParsersAction is private


def _add_definition_and_run(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    p = sub.add_parser("definition", parents=[shared["environment"]], help="print the pipeline definition JSON as deployed (placeholders kept)")
    p.set_defaults(func=cmd_definition)
    p = sub.add_parser("run", parents=[shared["workdir"], shared["environment"]], help="run the pipeline definition locally (no AWS, no Docker)")
    p.add_argument("--data", help="a local CSV/Parquet file or folder to use as InputDataUri")
    p.add_argument("--param", action="append", metavar="Name=Value", help="override a pipeline parameter (repeatable)")
    p.add_argument("--resume", action="store_true", help="reuse completed steps whose inputs did not change (cache-enabled steps)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout (logs go to stderr)")
    p.add_argument("--fresh-processes", action="store_true", help="start a fresh interpreter per step instead of forking a preloaded one")
    p.set_defaults(func=cmd_run)


def _add_models(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    on_either = [shared["target"], shared["workdir"], shared["environment"], shared["aws"]]
    models = sub.add_parser("models", help="the model registry (local unless --aws)").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", parents=on_either, help="list model package versions")
    p.add_argument("--group", help="only this model package group (default: every local group; with --aws the environment's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("approve", parents=on_either, help="set a version's approval status (default Approved; with --aws this deploys it)")
    p.add_argument("group")
    p.add_argument("version", type=int)
    p.add_argument("--status", default="Approved", choices=["Approved", "Rejected", "PendingManualApproval"])
    p.set_defaults(func=cmd_models_approve)


def _add_pipeline(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    on_either = [shared["target"], shared["workdir"], shared["environment"], shared["aws"]]
    pipeline = sub.add_parser("pipeline", help="pipeline executions (local unless --aws)").add_subparsers(dest="pipeline_command", required=True)
    p = pipeline.add_parser("start", parents=on_either, help="start a pipeline execution")
    p.add_argument("--param", action="append", metavar="Name=Value", help="pipeline parameter (repeatable)")
    p.set_defaults(func=cmd_pipeline_start)
    p = pipeline.add_parser("status", parents=on_either, help="per-step status and failure reasons of an execution (default: the latest)")
    p.add_argument("execution", nargs="?", help="execution ARN (local: execution id)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pipeline_status)
    p = pipeline.add_parser("logs", parents=on_either, help="the processing and training jobs' logs of an execution (default: the latest)")
    p.add_argument("execution", nargs="?", help="execution ARN (local: execution id)")
    p.add_argument("--follow", action="store_true", help="keep printing until the execution ends")
    p.set_defaults(func=cmd_pipeline_logs)


def _add_batch(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    on_either = [shared["target"], shared["workdir"], shared["environment"], shared["aws"]]
    p = sub.add_parser("batch", parents=on_either, help="batch predictions: a local file/folder, or (--aws) a SageMaker batch transform of an S3 prefix")
    p.add_argument("--input", required=True, help="local CSV file or folder; with --aws an s3:// prefix of headerless CSV rows")
    p.add_argument("--output", help="local predictions CSV (default predictions.csv)")
    p.add_argument("--instance-type", default="ml.m5.large")
    p.set_defaults(func=cmd_batch)


def _add_serving(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", parents=[shared["workdir"], shared["environment"]], help="serve the approved model behind the local gateway and the same Lambda handler"
    )
    p.add_argument("--port", type=int, default=DEFAULT_GATEWAY_PORT, help=f"gateway port (default {DEFAULT_GATEWAY_PORT})")
    p.add_argument("--endpoint-port", type=int, default=DEFAULT_ENDPOINT_PORT, help=f"local endpoint port (default {DEFAULT_ENDPOINT_PORT})")
    p.add_argument(
        "--api-key-file",
        help="a file holding the key clients must send (else $SAGELAB_API_KEY, else a random key kept in WORKDIR/api-key, mode 0600)",
    )
    p.add_argument("--api-key", help=argparse.SUPPRESS)  # refused with a message: a key on the command line is visible in `ps`
    p.add_argument("--group", help="model package group (default: any)")
    p.add_argument("--version", type=int, help="serve this version instead of the latest approved")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("predict", help="send rows to a front door (sagelab serve or a deployed API)")
    p.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080 or https://ID.execute-api.REGION.amazonaws.com/prod")
    p.add_argument(
        "--api-key-file", help="a file holding the x-api-key value (else $SAGELAB_API_KEY; identifies your client for its usage plan; not authentication)"
    )
    p.add_argument("--api-key", help=argparse.SUPPRESS)  # refused with a message: a key on the command line is visible in `ps`
    p.add_argument("--iam", action="store_true", help="sign the request with SigV4 from your AWS credentials (an API with serving.auth: iam)")
    p.add_argument("--region", help="with --iam: the API's region (default: from the URL, else your AWS config, else us-east-1)")
    p.add_argument("--file", required=True, help="rows.csv (optional header) or rows.json")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_predict)


def cmd_monitor(args: argparse.Namespace) -> int:
    from sagelab.local.monitor import MonitorError, render, run_check
    from stacks.drift_check.runtime.comparison import BaselineError, DriftSettings

    serving = _environment(args).serving
    settings = DriftSettings(threshold=serving.drift_threshold)
    labels = Path(args.labels) if args.labels else None
    try:
        result = run_check(Path(args.workdir), group=args.group, version=args.version, hours=args.hours, labels=labels, settings=settings)
    except (MonitorError, BaselineError) as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps({**result.report.to_json(), "report": str(result.report_path), "plot": str(result.plot_path)}, indent=2))
    else:
        print(render(result))
    return EXIT_FAILED if result.report.violations else EXIT_OK


def _add_monitor(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "monitor",
        parents=[shared["workdir"], shared["environment"]],
        help="check captured requests against the served version's baseline (exit 1 on violations)",
    )
    p.add_argument("--group", help="model package group (default: any)")
    p.add_argument("--version", type=int, help="the version whose baseline to compare with (default: the latest approved)")
    p.add_argument("--hours", type=float, help="only requests captured in the last HOURS (default: everything captured)")
    p.add_argument("--labels", help="ground truth for captured requests: CSV lines inference_id,label (X-Inference-Id; <id>:<row> for a row)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_monitor)


def _add_classroom(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    admin = [shared["aws"], shared["student_role"]]
    classroom = sub.add_parser("class", help="classroom admin: every student of a roster").add_subparsers(dest="class_command", required=True)
    p = classroom.add_parser(
        "report", parents=admin, help="write a CSV and an HTML page of each student: links, notebook, endpoint, last run, spend and budget"
    )
    p.add_argument("--roster", default="roster.csv")
    p.add_argument("--output", default="class-report.csv")
    p.add_argument("--html", help="the HTML page (default: the CSV's name with .html)")
    p.set_defaults(func=cmd_class_report)
    p = classroom.add_parser("stop", parents=admin, help="end of session: stop every notebook and delete every endpoint (models stay registered)")
    p.add_argument("--roster", default="roster.csv")
    p.set_defaults(func=cmd_class_stop)
    _add_portal(classroom)


def _add_portal(classroom: Any) -> None:
    from sagelab.local.portal import add_portal_parser

    add_portal_parser(classroom)


def _add_spend_cap(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    # `class` is _add_classroom's group; argparse lets a second function add to it through its choices.
    classroom = sub.choices["class"]
    commands = next(action for action in classroom._actions if isinstance(action, argparse._SubParsersAction))
    p = commands.add_parser("lift", parents=[shared["aws"]], help="lift a student's spending cap: new SageMaker work allowed again, a new cap for the month")
    p.add_argument("student")
    p.add_argument("--cap", type=float, help="the student's cap in USD for this month (default: what they spent plus the class's cap)")
    p.set_defaults(func=cmd_class_lift)


def _add_class_end(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    commands = next(action for action in sub.choices["class"]._actions if isinstance(action, argparse._SubParsersAction))
    p = commands.add_parser(
        "end", parents=[shared["aws"], shared["student_role"]], help="end of term: archive every student's work, then delete their stacks and buckets"
    )
    p.add_argument("--roster", default="roster.csv")
    p.add_argument("--archive-bucket", required=True, help="an S3 bucket in the admin's account that keeps the archive")
    p.add_argument("--prefix", help="key prefix in the archive bucket (default: class-end/<today>)")
    p.set_defaults(func=cmd_class_end)


def cmd_class_end(args: argparse.Namespace) -> int:
    import datetime as dt

    from sagelab.aws_ops import ClassroomOperations
    from sagelab.class_end import end_class

    classroom = ClassroomOperations(_aws(args), student_role=args.student_role)
    prefix = args.prefix or f"class-end/{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    results = end_class(classroom, _roster(args), args.archive_bucket, prefix)
    kept = [r for r in results if not r.complete]
    print(f"archive: s3://{args.archive_bucket}/{prefix}/ ({len(results) - len(kept)} students ended, {len(kept)} kept in place)")
    return EXIT_FAILED if kept else EXIT_OK


def cmd_class_lift(args: argparse.Namespace) -> int:
    from sagelab.spend_cap import lift

    ops = _aws(args)
    lifted = lift(ops, args.region or ops.session.region_name or "us-east-1", args.student, args.cap)
    print(f"{lifted.student}: cap lifted; spent ${lifted.spent_usd:.2f} this month, new cap ${lifted.cap_usd:.2f}")
    return EXIT_OK


def _add_synth_tools(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    p = sub.add_parser("synth-summary", help="summarize cdk.out: stacks, resources, cdk-nag findings")
    p.add_argument("cdk_out", nargs="?", default="cdk.out")
    p.set_defaults(func=cmd_synth_summary)
    p = sub.add_parser("demo", parents=[shared["workdir"]], help="synth + local pipeline run + serving (what `make demo` runs)")
    p.add_argument("--cdk", help="path of the cdk CLI")
    p.add_argument("cdk_args", nargs="*", help="extra arguments for cdk synth")
    p.set_defaults(func=cmd_demo)


def _add_release(sub: Subparsers, shared: dict[str, argparse.ArgumentParser]) -> None:
    from sagelab.release import add_release_commands

    add_release_commands(sub, shared)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagelab", description="SageLab: a SageMaker MLOps lab you can run locally and deploy with CDK")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    shared = _shared_options()
    for add_commands in (
        _add_definition_and_run,
        _add_models,
        _add_pipeline,
        _add_batch,
        _add_serving,
        _add_monitor,
        _add_classroom,
        _add_spend_cap,
        _add_class_end,
        _add_synth_tools,
        _add_release,
    ):
        add_commands(sub, shared)
    return parser


def _installed_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("sagelab")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ConfigError, OperationError) as error:
        print(f"sagelab: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sagelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
