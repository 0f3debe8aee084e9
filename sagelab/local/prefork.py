"""Run a step script in a process forked from one that has already imported the heavy libraries.

Each step still gets its own process (its own working directory, environment, argv, sys.path and
exit code, as a container would give it), but not its own 1-2 s of importing numpy, pandas,
scikit-learn, xgboost and matplotlib: those modules are imported once in the runner and the fork
inherits them. A script still has to import what it uses; only the cost of doing so is gone.
POSIX only; elsewhere (or with `sagelab run --fresh-processes`) steps start fresh interpreters.
"""

from __future__ import annotations

import importlib
import io
import os
import runpy
import site
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
        code = 1
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            os.close(write_end)
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
    os.close(write_end)
    with os.fdopen(read_end, "r", errors="replace") as stream:
        for line in stream:
            on_line(line.rstrip("\n"))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
