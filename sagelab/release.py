"""`sagelab release`: the release on the local twins, as the release pipeline runs it on AWS.

    dev registry (approved version) ─► staging: served by the local gateway ─► acceptance test
        ─► approval (--approve or a prompt) ─► prod: served ─► acceptance test

A stage is "deployed" when its record names the version; a failed test or a refusal leaves the
next stage's record untouched. Records live in `<workdir>/release/stages.json` (version, who
approved it and when, the test's evidence) and every change is appended to its history.
The acceptance test is stacks/release/runtime/acceptance.py, the very code the pipeline's test action runs.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sagelab.config import EnvironmentConfig, ReleaseConfig
from sagelab.local.registry import LocalRegistry, ModelPackage
from sagelab.naming import ResourceNames
from stacks.release.runtime.acceptance import AcceptanceResult, Evidence, EvidenceError, EvidenceLocations, http_sender, run_acceptance


class ReleaseError(ValueError):
    """A release that cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Stage:
    """One stage of a release: an environment name and its acceptance bounds and approval rule."""

    name: str
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    needs_approval: bool = False


def stages_of(chain: Sequence[EnvironmentConfig]) -> tuple[Stage, ...]:
    """The stages after the source of a release chain (config.release_chain): every stage after the
    first waits for an approval."""
    return tuple(Stage(env.name, env.release, needs_approval=index > 0) for index, env in enumerate(chain[1:]))


DEFAULT_STAGES = (Stage("staging"), Stage("prod", needs_approval=True))


@dataclass
class StageRecord:
    version: int
    group: str
    arn: str
    deployed_at: str
    approved_by: str
    acceptance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleaseOutcome:
    version: int
    reached: tuple[str, ...]  # stages now serving it
    stopped_at: str | None  # the stage whose test failed or whose approval was refused
    reason: str
    results: dict[str, AcceptanceResult]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "reached": list(self.reached),
            "stopped_at": self.stopped_at,
            "reason": self.reason,
            "acceptance": {stage: result.to_json() for stage, result in self.results.items()},
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ReleaseRecords:
    """`<workdir>/release/stages.json`: the current version of each stage, and the history."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / "release" / "stages.json"

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"stages": {}, "history": []}
        return dict(json.loads(self.path.read_text()))

    def current(self, stage: str) -> StageRecord | None:
        record = self.load()["stages"].get(stage)
        return StageRecord(**record) if record else None

    def append(self, event: dict[str, Any], stage: str | None = None, record: StageRecord | None = None) -> None:
        data = self.load()
        if stage is not None and record is not None:
            data["stages"][stage] = asdict(record)
        data["history"].append({"at": _now(), **event})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
        os.replace(temporary, self.path)


def local_evidence(workdir: Path, package: ModelPackage) -> Evidence:
    """The version's evidence from local S3 (s3://b/k == <workdir>/s3/b/k)."""
    if not package.metrics_url:
        raise EvidenceError(f"{package.group} version {package.version} has no registered evaluation")
    where = EvidenceLocations.of(package.metrics_url)

    def read(uri: str) -> bytes:
        path = Path(workdir) / "s3" / uri.removeprefix("s3://")
        if not path.is_file():
            raise EvidenceError(f"{uri} is gone (pipeline-runs/ is scratch that expires); retrain to release this model")
        return path.read_bytes()

    return Evidence.from_files(
        evaluation=package.metrics, feature_spec=json.loads(read(where.feature_spec)), features_npy=read(where.features), target_npy=read(where.target)
    )


def test_stage(workdir: Path, package: ModelPackage, stage: Stage, evidence: Evidence) -> AcceptanceResult:
    """Serve `package` as `stage` behind the local gateway and run the acceptance test on it."""
    from sagelab.local.serve import serving  # the servers' imports only when a release runs

    api_key = f"release-{secrets.token_hex(8)}"
    with serving(workdir, api_key, group=package.group, version=package.version, endpoint_name=ResourceNames.of(stage.name).endpoint) as (gateway, _):
        send = http_sender(gateway.url, {"x-api-key": api_key})
        return run_acceptance(gateway.url, send, evidence, tolerance=stage.release.tolerance, latency_p95_ms=stage.release.latency_p95_ms)


Approver = Callable[[str, ModelPackage, AcceptanceResult], "str | None"]  # who approved, or None: refused


def release(
    workdir: Path,
    *,
    approver: Approver,
    group: str | None = None,
    version: int | None = None,
    stages: Sequence[Stage] = DEFAULT_STAGES,
    log: Callable[[str], None] = print,
) -> ReleaseOutcome:
    """Carry the approved version (or `version`, to roll back to an older approved one) through the stages."""
    from sagelab.local.serve import ServeError

    registry = LocalRegistry(workdir)
    if version is not None:
        if group is None:
            raise ReleaseError("--version needs --group")
        package = registry.get(group, version)
        if package.approval_status != "Approved":
            raise ReleaseError(f"{group} version {version} is {package.approval_status}; approve it first (sagelab models approve {group} {version})")
    else:
        latest = registry.latest_approved(group)
        if latest is None:
            raise ReleaseError(f"no approved model in {registry.root}: approve one with `sagelab models approve GROUP VERSION`")
        package = latest
    try:
        evidence = local_evidence(workdir, package)
    except EvidenceError as error:
        raise ReleaseError(f"{package.group} version {package.version}: {error}") from None
    records = ReleaseRecords(workdir)
    reached: list[str] = []
    results: dict[str, AcceptanceResult] = {}
    previous: AcceptanceResult | None = None
    for stage in stages:
        approved_by = "release (first stage after the source approval)"
        if stage.needs_approval:
            assert previous is not None
            who = approver(stage.name, package, previous)
            if who is None:
                records.append({"stage": stage.name, "version": package.version, "event": "rejected"})
                log(f"release: {stage.name}: promotion of version {package.version} refused; {stage.name} keeps what it serves")
                return ReleaseOutcome(package.version, tuple(reached), stage.name, "approval refused", results)
            approved_by = who
        log(f"release: {stage.name}: deploying {package.group} version {package.version}")
        try:
            result = test_stage(workdir, package, stage, evidence)
        except ServeError as error:
            raise ReleaseError(str(error)) from None
        results[stage.name] = result
        log(f"release: {stage.name}: acceptance {'passed' if result.passed else 'FAILED'}: {result.summary()}")
        record = StageRecord(package.version, package.group, package.arn, _now(), approved_by, result.to_json())
        # The stage was deployed before it was tested (as on AWS): it records the version either
        # way, and a failed test stops the release before the next stage.
        records.append({"stage": stage.name, "version": package.version, "event": "deployed", "passed": result.passed}, stage.name, record)
        reached.append(stage.name)
        if not result.passed:
            return ReleaseOutcome(package.version, tuple(reached), stage.name, "acceptance test failed", results)
        previous = result
    return ReleaseOutcome(package.version, tuple(reached), None, "released", results)


def status(workdir: Path, stages: Sequence[Stage] = DEFAULT_STAGES) -> list[dict[str, Any]]:
    """Each stage's current version, who approved it and when, and whether its test passed."""
    records = ReleaseRecords(workdir)
    rows = []
    for stage in stages:
        record = records.current(stage.name)
        rows.append(
            {
                "stage": stage.name,
                "version": record.version if record else None,
                "model_package": record.arn if record else None,
                "approved_by": record.approved_by if record else None,
                "deployed_at": record.deployed_at if record else None,
                "test_passed": record.acceptance.get("passed") if record else None,
            }
        )
    return rows


def prompt_approver(stage: str, package: ModelPackage, evidence: AcceptanceResult) -> str | None:
    """Ask on the terminal, showing the evidence; the local user approves."""
    print(f"evidence from the previous stage: {evidence.summary()}")
    answer = input(f"promote {package.group} version {package.version} to {stage}? [y/N] ")
    return getpass.getuser() if answer.strip().lower() in ("y", "yes") else None


# -- the command (registered by sagelab/cli.py's _add_release) -----------------------------------
def configured_chain(config_file: str | None) -> tuple[EnvironmentConfig, ...]:
    """The config's release chain (source first), or () when nothing promotes."""
    from sagelab.config import release_chain
    from sagelab.settings import load_project_config

    config = load_project_config(config_file)
    sources = {env.promote_from for env in config.environments if env.promote_from}
    for env in config.environments:
        if env.name in sources and env.promote_from is None:
            return release_chain(config.environments, env)
    return ()


def configured_stages(config_file: str | None) -> tuple[Stage, ...]:
    """The stages of the config's release chain (its first environment others promote from), or
    staging then prod with the default bounds when the config has no `promote_from`."""
    chain = configured_chain(config_file)
    return stages_of(chain) if chain else DEFAULT_STAGES


def add_release_commands(sub: Any, shared: dict[str, Any]) -> None:
    import argparse

    parser = sub.add_parser(
        "release",
        parents=[shared["workdir"]],
        help="release the approved version locally: serve it as staging, test it, approve, serve it as prod, test it again",
    )
    parser.add_argument("action", nargs="?", choices=["run", "status"], default="run", help="run a release (default) or show where each version is")
    parser.add_argument("--config", help="YAML config whose promote_from chain gives the stages and their bounds (default: staging, prod)")
    parser.add_argument("--group", help="model package group (default: any)")
    parser.add_argument("--version", type=int, help="release this approved version (an older one rolls back) instead of the latest approved")
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve every promotion that waits for one (default: ask)")
    decision.add_argument("--reject", action="store_true", help="refuse every promotion that waits for one")
    parser.add_argument("--json", action="store_true", help="print a machine-readable outcome on stdout")
    parser.add_argument("--aws", action="store_true", help="status only: the deployed release pipeline's history (the config's source account)")
    parser.add_argument("--profile", help="with --aws: AWS profile")
    parser.add_argument("--region", help="with --aws: AWS region (default: the source environment's)")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # tests: a local stand-in
    parser.set_defaults(func=command)


def command(args: Any) -> int:
    import sys

    from sagelab.config import ConfigError

    try:
        stages = configured_stages(args.config)
    except ConfigError as error:
        print(f"sagelab: error: {error}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    if args.aws and args.action != "status":
        print("sagelab: error: --aws shows where each version is (release status); on AWS, approving a version starts the release", file=sys.stderr)
        return 2
    if args.action == "status":
        if args.aws:
            from sagelab.aws_session import new_session
            from sagelab.release_aws import release_status

            chain = configured_chain(args.config)
            if not chain:
                print("sagelab: error: --aws needs a config with promote_from (--config FILE): which pipeline, which stages", file=sys.stderr)
                return 2
            session = new_session(profile_name=args.profile, region_name=args.region or chain[0].region)
            rows = release_status(session.client("codepipeline", endpoint_url=args.endpoint_url), chain[0].name, [env.name for env in chain[1:]])
        else:
            rows = status(workdir, stages)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                where = f"version {row['version']} ({row['model_package']})" if row["version"] else "nothing released"
                test = "" if row.get("test_passed") is None else f", test {'passed' if row['test_passed'] else 'FAILED'}"
                approved = f", approved by {row['approved_by']}" if row["approved_by"] else ""
                print(f"{row['stage']:<10} {where}{approved}{', at ' + row['deployed_at'] if row['deployed_at'] else ''}{test}")
        return 0

    def approver(stage: str, package: ModelPackage, evidence: AcceptanceResult) -> str | None:
        if args.approve:
            return f"{getpass.getuser()} (--approve)"
        if args.reject:
            return None
        if not sys.stdin.isatty():
            raise ReleaseError(f"promoting to {stage} needs an approval: pass --approve or --reject (no terminal to ask on)")
        return prompt_approver(stage, package, evidence)

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        outcome = release(workdir, approver=approver, group=args.group, version=args.version, stages=stages, log=log)
    except (ReleaseError, EvidenceError) as error:
        print(f"sagelab: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        where = ", ".join(outcome.reached) or "no stage"
        print(f"version {outcome.version}: {outcome.reason}; now serving it: {where}")
    return 0 if outcome.stopped_at is None else 1
