"""How a step's program runs: a process with the container's environment, its lines shown to a
person and kept in the step's log file, its exit code a step failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from sagelab.local import prefork
from sagelab.local.runner.errors import StepFailed

LOG_TAIL_LINES = 15


class Processes:
    """Runs step programs with `python`. Python steps run in processes forked from a parent that
    imported numpy/pandas/xgboost once (sagelab.local.prefork): this process when it may fork, its
    fork server when it may not (a Jupyter kernel, a process with an OpenMP pool); fresh interpreters on request
    (`fresh_processes`) or where fork is missing. `log_dir` (set per execution) keeps each step's
    log, for `sagelab pipeline logs --local`."""

    def __init__(self, log: Callable[[str], None], *, python: str = sys.executable, fresh_processes: bool = False) -> None:
        self.log = log
        self.python = python
        self.fresh_processes = fresh_processes
        self.log_dir: Path | None = None

    def interpreter(self, command: str) -> str:
        return self.python if Path(command).name in ("python", "python3") else command

    def execute(self, name: str, command: list[str], cwd: Path, environment: Mapping[str, str]) -> list[str]:
        env = {**os.environ, **{k: str(v) for k, v in environment.items()}, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)  # the script sees only its own folder, as in the container
        cwd.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []

        log_file = (self.log_dir / f"{name.replace('/', '-')}.log").open("a") if self.log_dir is not None else None

        def on_line(line: str) -> None:
            lines.append(line)
            self.log(f"   [{name}] {line}")
            if log_file is not None:
                log_file.write(line + "\n")

        python_script = not self.fresh_processes and command[0] == self.python and len(command) > 1 and command[1].endswith(".py")
        script = (command[1] if Path(command[1]).is_absolute() else str(cwd / command[1])) if python_script else ""
        code: int | None = None
        if python_script and prefork.available():
            prefork.preload()
            code = prefork.run_script(script, command[2:], cwd, env, on_line)
        elif python_script and self.python == sys.executable and prefork.server_available():
            try:
                code = prefork.fork_server().run_script(script, command[2:], cwd, env, on_line)
            except prefork.ForkServerLost as lost:
                self.log(f"   [{name}] {lost}; starting a fresh interpreter instead")
        if code is None:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            assert process.stdout is not None
            for line in process.stdout:
                on_line(line.rstrip("\n"))
            code = process.wait()
        if log_file is not None:
            log_file.close()
        if code != 0:
            raise StepFailed(name, f"{Path(command[1]).name if len(command) > 1 else command[0]} exited with code {code}", lines[-LOG_TAIL_LINES:])
        return lines

    def step_log(self, name: str) -> Callable[[str], None]:
        """A step's log lines, shown like a job's output and kept in its log file (as `execute`
        does for the steps that run as processes)."""
        assert self.log_dir is not None, "step_log is for a running execution"
        log_file = self.log_dir / f"{name}.log"

        def log(line: str) -> None:
            self.log(f"   [{name}] {line}")
            with log_file.open("a") as handle:
                handle.write(line + "\n")

        return log
