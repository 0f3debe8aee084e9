"""Run a step script in a process forked from one that has already imported the heavy libraries.

Each step still gets its own process (its own working directory, environment, argv, sys.path and
exit code, as a container would give it), but not its own 1-2 s of importing numpy, pandas,
scikit-learn, xgboost and matplotlib: those modules are imported once in the runner and the fork
inherits them. A script still has to import what it uses; only the cost of doing so is gone.
POSIX only; elsewhere (or with `sagelab run --fresh-processes`) steps start fresh interpreters.

A process that may not fork itself (a Jupyter kernel, whose I/O threads a fork would not copy; a
process that trained in process and holds an OpenMP pool) forks its steps from a fork server
instead: one helper interpreter per process, started on first use, that imports the same libraries
once, stays single-threaded and forks one child per step on request (`fork_server`). The lab
notebook's runs start about ten steps each session; each was 1.5-3 s of imports in a fresh interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import runpy
import signal
import site
import socket
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sagelab.package_files import package_dir

PRELOAD = ("numpy", "pandas", "sklearn.model_selection", "sklearn.metrics", "xgboost", "matplotlib", "matplotlib.pyplot", "tarfile", "json", "argparse")
_preloaded = False
# The process's native threads right after the heavy imports (OpenBLAS's pool starts at numpy's
# import and survives a fork: it registers fork handlers). More threads later mean something
# started a pool `threading` cannot see, typically GNU OpenMP's after an in-process fit (the
# K-Means twin, AutoML, a test training xgboost): that pool does not survive a fork, and the
# child's first parallel region would wait forever for threads that were not copied.
_native_threads_after_preload: int | None = None


def native_thread_count() -> int:
    """The threads the kernel runs for this process (Linux's procfs); elsewhere only Python's are seen."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def available() -> bool:
    """Forking is safe only from a single-threaded process: a fork copies one thread, so a lock held
    by another (a server thread, a Jupyter kernel's I/O threads, an OpenMP pool) would never be
    released in the child. Anything else starts fresh interpreters."""
    if not (hasattr(os, "fork") and sys.platform != "win32" and threading.active_count() == 1):
        return False
    return _native_threads_after_preload is None or native_thread_count() <= _native_threads_after_preload


def preload() -> None:
    """Import the step scripts' heavy dependencies once (idempotent). Call it before anything in the
    process fits a model in process (a long-lived process that also trains in process, such as a
    test session, calls it first), so the native threads it records are the imports' own."""
    global _preloaded, _native_threads_after_preload
    if _preloaded:
        return
    # Steps draw without a display: matplotlib reads MPLBACKEND when it is imported. Only for the
    # import, so the caller's own environment (a Jupyter kernel started later, say) is left as it was.
    previous = os.environ.get("MPLBACKEND")
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        for module in PRELOAD:
            try:
                importlib.import_module(module)
            except ImportError:
                continue  # the script will fail on its own import, with its own message
    finally:
        if previous is None:
            os.environ.pop("MPLBACKEND", None)
    _preloaded = True
    _native_threads_after_preload = native_thread_count()


def _site_paths() -> list[str]:
    # What a fresh `python script.py` would have on sys.path after the script's own folder: the
    # standard library and site-packages, not the runner's working directory nor the checkout
    # that holds `sagelab` (for an installed `sagelab` that folder is site-packages: kept).
    home = str(package_dir("sagelab").parent)
    site_dirs = {*site.getsitepackages(), site.getusersitepackages()}
    not_on_a_fresh_path = {os.getcwd(), *([] if home in site_dirs else [home])}
    return [p for p in sys.path if p and str(Path(p).resolve()) not in not_on_a_fresh_path]


def run_script(script: str, arguments: Sequence[str], cwd: Path, environment: Mapping[str, str], on_line: Callable[[str], None]) -> int:
    """Fork, run `script` as __main__ in the child, stream its output lines; return its exit code."""
    site_paths = _site_paths()
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: become the step's "container process"
        os.close(read_end)
        _become_step(script, arguments, cwd, environment, site_paths, write_end)
    os.close(write_end)
    _stream(read_end, on_line)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _stream(read_end: int, on_line: Callable[[str], None]) -> None:
    with os.fdopen(read_end, "r", errors="replace") as stream:
        for line in stream:
            on_line(line.rstrip("\n"))


def _become_step(script: str, arguments: Sequence[str], cwd: Path | str, environment: Mapping[str, str], site_paths: Sequence[str], output: int) -> None:
    """In a freshly forked child: run `script` as __main__ with `output` as its stdout and stderr,
    then exit with its code (never returns)."""
    code = 1
    try:
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = [script, *arguments]
        sys.path[:] = [str(Path(script).parent), *site_paths]
        code = 0
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exit_:
            if isinstance(exit_.code, int):
                code = exit_.code
            elif exit_.code is not None:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# -- the fork server ---------------------------------------------------------------------------------
# One request at a time over a socket pair: the client sends a length-prefixed JSON request with the
# write end of its output pipe attached (SCM_RIGHTS); the server forks, answers the step's pid, waits
# for it and answers its exit code. The server exits when the client's end closes (the client exited).
_HEADER = struct.Struct("!Q")
_NUMBER = struct.Struct("!q")
_SERVER_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from sagelab.local.prefork import serve; serve(int(sys.argv[2]))"


class ForkServerLost(RuntimeError):
    """The fork server went away before it started the step (the step did not run)."""


def server_available() -> bool:
    """Whether this platform can run a fork server (fork and passing descriptors over a socket)."""
    return hasattr(os, "fork") and sys.platform != "win32" and hasattr(socket, "send_fds")


class ForkServer:
    """A preloaded, single-threaded interpreter that forks this process's steps (see the module doc)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        home = str(package_dir("sagelab").parent)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER_BOOT, home, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self.socket = ours
        self.lock = threading.Lock()  # one step at a time: the runner runs its steps in order anyway

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.socket.close()  # the server sees the end of its input and exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def run_script(self, script: str, arguments: Sequence[str], cwd: Path, environment: Mapping[str, str], on_line: Callable[[str], None]) -> int:
        """As `run_script`, in a child of the server. ForkServerLost when the server could not start it."""
        request = json.dumps(
            {"script": script, "arguments": list(arguments), "cwd": str(cwd), "environment": dict(environment), "site_paths": _site_paths()}
        ).encode()
        with self.lock:
            read_end, write_end = os.pipe()
            try:
                try:
                    socket.send_fds(self.socket, [_HEADER.pack(len(request))], [write_end])
                    self.socket.sendall(request)
                    pid = _NUMBER.unpack(_receive(self.socket, _NUMBER.size))[0]
                except OSError as error:
                    _forget(self)
                    raise ForkServerLost(f"the fork server did not take the step: {error}") from error
                finally:
                    os.close(write_end)
            except BaseException:
                os.close(read_end)
                raise
            try:
                _stream(read_end, on_line)
                return int(_NUMBER.unpack(_receive(self.socket, _NUMBER.size))[0])
            except BaseException:
                # Interrupted (or the server died mid-step): stop the step as a fresh process would
                # stop with its runner, and start a new server next time rather than resynchronize.
                _kill(pid)
                _forget(self)
                raise


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):  # it already exited
        os.kill(pid, signal.SIGKILL)


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the fork server closed the connection")
        data += chunk
    return data


_server: ForkServer | None = None
_server_lock = threading.Lock()


def fork_server() -> ForkServer:
    """This process's fork server, started on first use (and again if it died)."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive():
            _server = ForkServer()
            atexit.register(_server.close)
        return _server


def _forget(server: ForkServer) -> None:
    global _server
    with _server_lock:
        if _server is server:
            _server = None
    server.socket.close()


def serve(fd: int) -> None:
    """The fork server's loop (in its own interpreter): preload, then one forked child per request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C or a kernel interrupt reaches the step, not the server
    preload()
    connection = socket.socket(fileno=fd)
    while True:
        try:
            header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 1)
        except OSError:
            return
        if not header:
            return  # the client exited or closed its end
        header += _receive(connection, _HEADER.size - len(header))
        request = json.loads(_receive(connection, _HEADER.unpack(header)[0]))
        (output,) = fds
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            connection.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
            _become_step(request["script"], request["arguments"], request["cwd"], request["environment"], request["site_paths"], output)
        os.close(output)
        try:
            connection.sendall(_NUMBER.pack(pid))
            _, status = os.waitpid(pid, 0)
            connection.sendall(_NUMBER.pack(os.waitstatus_to_exitcode(status)))
        except OSError:
            _kill(pid)
            return
