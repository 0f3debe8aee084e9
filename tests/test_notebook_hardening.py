"""The notebook has no root bypass: its on-start script (as synthesized) never lets root execute,
read or write anything ec2-user can change, no cron job runs as root from ec2-user's files, the
instance metadata service needs IMDSv2; and the idle auto-stop still stops an idle notebook
(a fake Jupyter server over HTTPS on 127.0.0.1, moto for SageMaker).

The script is read the way bash reads it, for the subset a lifecycle script needs: heredocs,
`;`/`&&`/`||`/`|` lists, assignments, redirections and `$VAR` expansion. A command this reader
does not understand fails the test rather than passing unseen.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import json
import re
import shlex
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stacks.notebook_environment.runtime import idle_stop

ON_START = Path(__file__).resolve().parent.parent / "stacks" / "notebook_environment" / "runtime" / "on_start.sh"
# ec2-user owns its home: conda (every interpreter in it), the lab, and the SageMaker volume that
# survives restarts. The temporary directories are writable by everyone.
EC2_USER_WRITABLE = ("/home/ec2-user", "/tmp", "/var/tmp", "/dev/shm")
SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
SHELL_BUILTINS = {"set", "export", "umask", "cd", "test", "[", "true", "false", "exit", ":", "echo", "printf"}
CRON_LOCATIONS = ("/etc/cron.d/", "/etc/crontab", "/var/spool/cron/")
AS_OTHER_USER = re.compile(r"^(?:sudo|runuser)$")


# -- reading the script ---------------------------------------------------------------------------
@dataclass
class Command:
    words: list[str]
    redirects: list[str]  # targets of >, >>, <
    heredoc: str | None = None


@dataclass
class RootView:
    """What root does in a script: its commands, and the cron entries it installs."""

    commands: list[Command] = field(default_factory=list)
    path_set: bool = False
    cron_entries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _expand(word: str, variables: dict[str, list[str]]) -> list[str]:
    """Every value `word` can take: a variable assigned twice (e.g. `[ -x $P ] || P=...`) has two."""
    names = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", word)
    choices = [variables.get(name, [f"<unset {name}>"]) for name in names]
    results = []
    for combination in itertools.product(*choices):
        text = word
        for name, value in zip(names, combination, strict=True):
            text = re.sub(r"\$\{?" + name + r"\}?(?![A-Za-z0-9_])", value, text, count=1)
        results.append(text)
    return results or [word]


def _split_commands(line: str) -> list[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def read_as_root(script: str) -> RootView:
    view = RootView()
    variables: dict[str, list[str]] = {}
    lines = iter(script.splitlines())
    for raw in lines:
        heredoc_body = None
        marker = re.search(r"<<-?\s*'?\"?([A-Za-z_][A-Za-z0-9_]*)'?\"?", raw)
        line = raw
        if marker:
            terminator = marker.group(1)
            body = []
            for text in lines:
                if text.strip() == terminator:
                    break
                body.append(text)
            heredoc_body = "\n".join(body)
            line = raw[: marker.start()] + raw[marker.end() :]
        for tokens in _split_commands(line):
            words: list[str] = []
            redirects: list[str] = []
            pending_redirect = False
            for token in tokens:
                if token in (">", ">>", "<", ">&"):
                    pending_redirect = True
                    continue
                expanded = _expand(token, variables)
                if pending_redirect:
                    redirects.extend(expanded)
                    pending_redirect = False
                elif not words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
                    name, _, value = token.partition("=")
                    variables.setdefault(name, []).extend(_expand(value, variables))
                else:
                    words.extend(expanded)
            if words[:1] == ["export"] and any(word.startswith("PATH=") for word in words):
                entries = next(word for word in words if word.startswith("PATH="))[5:].split(":")
                view.path_set = True
                if any(entry not in SYSTEM_DIRS for entry in entries):
                    view.problems.append(f"root's PATH has a directory outside {SYSTEM_DIRS}: {entries}")
                continue
            if words or redirects:
                view.commands.append(Command(words=words, redirects=redirects, heredoc=heredoc_body))
    for command in view.commands:
        writes_cron = any(target.startswith(CRON_LOCATIONS) for target in command.redirects) or command.words[:1] == ["crontab"]
        if writes_cron:
            data = command.heredoc if command.heredoc is not None else "\n".join(command.words[1:])  # echo "LINE": one line per value
            view.cron_entries += [entry for entry in data.splitlines() if entry.strip() and not entry.lstrip().startswith("#") and "=" not in entry.split()[0]]
    return view


def _ec2_user_writable(value: str) -> bool:
    return any(value == base or value.startswith(base + "/") for base in EC2_USER_WRITABLE)


def root_bypasses(script: str) -> list[str]:
    """Every way the script lets ec2-user's files run or be touched as root; [] when there is none."""
    view = read_as_root(script)
    problems = list(view.problems)
    for command in view.commands:
        program = command.words[0] if command.words else ""
        runs_as = command.words[command.words.index("-u") + 1] if AS_OTHER_USER.match(program) and "-u" in command.words else None
        if runs_as is not None and runs_as != "root":
            continue  # the heredoc runs as that user: its files are that user's business
        if program and "/" not in program and program not in SHELL_BUILTINS and not view.path_set:
            problems.append(f"root runs {program!r} through an inherited PATH (it may find ec2-user's conda first)")
        if program == "." or program == "source":
            problems.append(f"root sources {command.words[1:]}")
        for value in command.words + command.redirects:
            if _ec2_user_writable(value):
                problems.append(f"root touches {value!r}, which ec2-user can replace (in: {' '.join(command.words)})")
    for entry in view.cron_entries:
        fields = entry.split()
        schedule_fields = 1 if fields[0].startswith("@") else 5
        user, job = fields[schedule_fields], fields[schedule_fields + 1 :]
        if user != "root":
            continue
        for value in job:
            if _ec2_user_writable(value):
                problems.append(f"cron runs {value!r} as root, which ec2-user can replace: {entry}")
        if job and not job[0].startswith(tuple(f"{directory}/" for directory in SYSTEM_DIRS)):
            problems.append(f"cron runs {job[0]!r} as root from outside the system directories: {entry}")
    return problems


def _render(value: Any) -> str:
    """The lifecycle script as the notebook receives it (a CloudFormation value: a string, or
    Fn::Join over strings and references, which are given placeholder names)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_render(part) for part in parts)
    if isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value):
        return "REFERENCED-VALUE"
    raise AssertionError(f"unexpected CloudFormation value in the lifecycle script: {value!r}")


def on_start_script(template: dict[str, Any]) -> str:
    (lifecycle,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::NotebookInstanceLifecycleConfig"]
    (hook,) = lifecycle["Properties"]["OnStart"]
    return _render(hook["Content"]["Fn::Base64"])


# -- the synthesized notebook -------------------------------------------------------------------
def test_the_synthesized_on_start_script_is_valid_bash(platform_template: dict[str, Any]) -> None:
    subprocess.run(["bash", "-n"], input=on_start_script(platform_template), text=True, check=True)


def test_root_never_runs_or_touches_what_ec2_user_can_change(platform_template: dict[str, Any]) -> None:
    assert root_bypasses(on_start_script(platform_template)) == []


def test_the_idle_auto_stop_is_installed_and_runs_as_ec2_user(platform_template: dict[str, Any]) -> None:
    script = on_start_script(platform_template)
    (entry,) = read_as_root(script).cron_entries
    schedule, user, job = entry.split()[:5], entry.split()[5], entry.split()[6:]
    assert schedule == ["*/5", "*", "*", "*", "*"] and user == "ec2-user"
    assert job[1].endswith("sagelab-idle-stop.py") and job[2:4] == ["--idle-minutes", "60"]
    assert f'cp "$LAB_DIR/idle_stop.py" {job[1]}' in script, "the script cron runs is the one copied from the lab"


def test_the_checker_finds_the_root_bypass_of_a_root_cron_job_on_conda_python() -> None:
    """The negative case: the lifecycle script before this fix (root cron, ec2-user's Python and
    script, root writing in ec2-user's directories, inherited PATH) is caught on every count."""
    before = """#!/bin/bash
set -euo pipefail
LAB_DIR=/home/ec2-user/SageMaker/sagelab
mkdir -p "$LAB_DIR"
aws s3 cp --recursive --quiet "s3://bucket/lab/" "$LAB_DIR/"
chown -R ec2-user:ec2-user "$LAB_DIR"
cp "$LAB_DIR/idle_stop.py" /home/ec2-user/sagelab-idle-stop.py
PYTHON=/home/ec2-user/anaconda3/bin/python
[ -x "$PYTHON" ] || PYTHON=/usr/bin/python3
echo "*/5 * * * * root $PYTHON /home/ec2-user/sagelab-idle-stop.py --idle-minutes 60 >> /var/log/x.log 2>&1" > /etc/cron.d/sagelab-idle-stop
"""
    problems = root_bypasses(before)
    assert any("cron runs '/home/ec2-user/anaconda3/bin/python" in p for p in problems)
    assert any("cron runs '/home/ec2-user/sagelab-idle-stop.py'" in p for p in problems), "even with the system Python the script is ec2-user's"
    assert any("inherited PATH" in p for p in problems)
    assert any("root touches '/home/ec2-user/SageMaker/sagelab'" in p for p in problems)
    safe_cron_as_root = "export PATH=/usr/bin:/bin\ncat > /etc/cron.d/x <<'CRON'\n*/5 * * * * root /usr/bin/python3 /opt/sagelab/stop.py\nCRON\n"
    assert root_bypasses(safe_cron_as_root) == [], "a root job from root-owned files is fine"


def test_notebook_requires_imdsv2(platform_template: dict[str, Any]) -> None:
    (instance,) = [r for r in platform_template["Resources"].values() if r["Type"] == "AWS::SageMaker::NotebookInstance"]
    assert instance["Properties"]["InstanceMetadataServiceConfiguration"] == {"MinimumInstanceMetadataServiceVersion": "2"}
    assert instance["Properties"]["RootAccess"] == "Disabled"


# -- the idle auto-stop, end to end ------------------------------------------------------------
class FakeJupyter:
    """Jupyter's REST API (sessions, terminals, status) over HTTPS with a self-signed certificate,
    as on the notebook instance."""

    def __init__(self, certificate: Path, private_key: Path) -> None:
        self.sessions: list[dict[str, Any]] = []
        self.terminals: list[dict[str, Any]] = []
        self.started = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                answers = {
                    "/api/sessions": fake.sessions,
                    "/api/terminals": fake.terminals,
                    "/api/status": {"started": fake.started.isoformat().replace("+00:00", "Z"), "connections": 0, "kernels": len(fake.sessions)},
                }
                body = json.dumps(answers.get(self.path, {"message": "Not Found"})).encode()
                self.send_response(200 if self.path in answers else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, private_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.api = f"https://localhost:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeJupyter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "jupyter.crt", directory / "jupyter.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def notebook_on_moto(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, Path, Any]]:
    """A notebook instance `InService` in moto, the instance's metadata file, and boto3 pointed at
    moto through AWS's own per-service endpoint variable (idle_stop.py is unchanged for it)."""
    import boto3

    for variable, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_SAGEMAKER": moto_url,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(variable, value)
    for variable in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # as under cron: the region comes from the notebook's ARN
        monkeypatch.delenv(variable, raising=False)
    name = f"idle-stop-{uuid.uuid4().hex[:10]}"
    client = boto3.client("sagemaker", region_name="us-east-1")
    client.create_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn="arn:aws:iam::123456789012:role/notebook")
    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text(json.dumps({"ResourceName": name, "ResourceArn": f"arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/{name}"}))
    yield name, metadata, client


@pytest.fixture
def jupyter(tmp_path: Path) -> Iterator[FakeJupyter]:
    with FakeJupyter(*_self_signed(tmp_path)) as server:
        yield server


def _status(client: Any, name: str) -> str:
    return str(client.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"])


def _stamp(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_idle_notebook_is_stopped(notebook_on_moto: tuple[str, Path, Any], jupyter: FakeJupyter) -> None:
    name, metadata, client = notebook_on_moto
    assert _status(client, name) == "InService"
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=90)
    jupyter.sessions = [{"kernel": {"execution_state": "idle", "last_activity": _stamp(long_ago)}}]
    assert idle_stop.main(["--idle-minutes", "60", "--jupyter-api", jupyter.api, "--metadata-file", str(metadata)]) == 0
    assert {"/api/sessions", "/api/terminals", "/api/status"} <= set(jupyter.requests)
    assert _status(client, name) in ("Stopping", "Stopped")


@pytest.mark.parametrize(
    ("kernel_state", "minutes_ago", "dry_run"),
    [("busy", 600, False), ("idle", 10, False), ("idle", 600, True)],
    ids=["busy-kernel", "recent-activity", "dry-run"],
)
def test_notebook_in_use_or_dry_run_keeps_running(
    notebook_on_moto: tuple[str, Path, Any], jupyter: FakeJupyter, kernel_state: str, minutes_ago: int, dry_run: bool
) -> None:
    name, metadata, client = notebook_on_moto
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    jupyter.sessions = [{"kernel": {"execution_state": kernel_state, "last_activity": _stamp(moment)}}]
    argv = ["--idle-minutes", "60", "--jupyter-api", jupyter.api, "--metadata-file", str(metadata)] + (["--dry-run"] if dry_run else [])
    assert idle_stop.main(argv) == 0
    assert _status(client, name) == "InService"


def test_idle_stop_script_runs_on_older_pythons() -> None:
    """JupyterSystemEnv may be older than this project: the script must not need Python 3.11."""
    tree = ast.parse(Path(idle_stop.__file__).read_text(), feature_version=(3, 8))
    assert not [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "UTC"], "datetime.UTC is Python 3.11+"
