"""The fork server (sagelab/local/prefork.py): a process that may not fork itself (a Jupyter
kernel's I/O threads; here a thread of the test's own) still runs its Python steps in processes
forked from a preloaded interpreter, each with its own working directory, environment, argv,
sys.path and exit code, as a fresh interpreter would give it."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagelab.local import prefork
from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.processes import Processes

STEP = """
import json, os, sys
print(json.dumps({
    "preloaded": "xgboost" in sys.modules,  # imported by the server, not by this script
    "argv": sys.argv[1:], "cwd": os.getcwd(), "greeting": os.environ.get("GREETING"),
    "pythonpath": os.environ.get("PYTHONPATH"), "path0": sys.path[0], "ppid": os.getppid(),
}))
if sys.argv[1] == "raise":
    raise RuntimeError("step broke")
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def threaded() -> Iterator[None]:
    """This process with a second live thread: forking it would not copy that thread."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    assert not prefork.available()
    yield
    stop.set()
    thread.join()


def test_a_process_that_may_not_fork_runs_its_steps_in_the_fork_server(threaded: None, tmp_path: Path) -> None:
    script = tmp_path / "code" / "step.py"
    script.parent.mkdir()
    script.write_text(STEP)
    lines: list[str] = []
    processes = Processes(lines.append)

    output = processes.execute("Score", [sys.executable, str(script), "0"], tmp_path / "work", {"GREETING": "hello"})
    seen = json.loads(output[-1])
    assert seen["preloaded"] is True, "the step did not run in a fork of the preloaded server"
    assert seen["ppid"] == prefork.fork_server().process.pid
    assert seen["argv"] == ["0"] and seen["cwd"] == str(tmp_path / "work") and seen["greeting"] == "hello"
    assert seen["pythonpath"] is None and seen["path0"] == str(script.parent)
    assert any(line.startswith("   [Score] {") for line in lines)

    with pytest.raises(StepFailed, match=r"step\.py exited with code 3"):
        processes.execute("Exit", [sys.executable, str(script), "3"], tmp_path / "work", {})
    with pytest.raises(StepFailed, match=r"step\.py exited with code 1") as failed:
        processes.execute("Raise", [sys.executable, str(script), "raise"], tmp_path / "work", {})
    assert any("RuntimeError: step broke" in line for line in failed.value.log_tail)
    # One server serves every step of the process.
    again = json.loads(processes.execute("Again", [sys.executable, str(script), "0"], tmp_path / "work", {})[-1])
    assert again["ppid"] == seen["ppid"]


def test_the_fork_server_exits_when_its_client_closes(tmp_path: Path) -> None:
    server = prefork.ForkServer()
    script = tmp_path / "step.py"
    script.write_text(STEP)
    lines: list[str] = []
    assert server.run_script(str(script), ["5"], tmp_path, {}, lines.append) == 5
    assert json.loads(lines[-1])["ppid"] == server.process.pid
    server.close()
    assert server.process.returncode == 0, "the server ended on its own when its input closed, not killed"
